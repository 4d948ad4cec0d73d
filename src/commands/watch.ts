import { EXIT } from '../core/errors';

export async function handler(): Promise<number> {
  process.stderr.write('mailagent: `watch` is not yet available in this version\n');
  return EXIT.UNAVAILABLE;
}
