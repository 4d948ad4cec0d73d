import { backup } from './backup';
import { db } from './db';
import { files } from './files';
import { jobs } from './jobs';
import { mail } from './mail';
import { nms } from './nms';
import type { Service } from './types';

/**
 * Every service the agent knows. Reading this map tells you everything mailagent can do by mail;
 * it is static so the single-file bundle contains each adapter.
 */
export const services: Record<string, Service> = { db, nms, jobs, mail, backup, files };
