import { EXIT } from '../core/errors';

export async function handler(): Promise<number> {
  process.stderr.write('mailagent: `users` is not yet available in this version\n');
  return EXIT.UNAVAILABLE;
}
