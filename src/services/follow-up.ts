import type { ActionContext, Result } from './types';

/** Work that outlives a reply (long jobs and backups, and their follow-up mails) in this process, so `watch` can wait for it on shutdown. */
const inProgress = new Set<Promise<unknown>>();

export function track<T>(work: Promise<T>): Promise<T> {
  const settled = work.then(
    () => undefined,
    () => undefined,
  );
  inProgress.add(settled);
  settled.finally(() => inProgress.delete(settled));
  return work;
}

/** Waits until all work in progress has ended, or the deadline passed; true when none is left. */
export async function drainWork(deadlineMs: number): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  while (inProgress.size) {
    const left = end - Date.now();
    if (left <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...inProgress]), new Promise((r) => (timer = setTimeout(r, left)))]);
    clearTimeout(timer);
  }
  return true;
}

export const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

/**
 * The reply for work that may take long: its result when it ends within `replyAfterMs`; else
 * (under `watch`, which can send a second mail) a "started" reply now and the result in a
 * follow-up mail titled `title`. Without followUp (run), the reply waits for the result.
 */
export async function resultOrFollowUp(ctx: ActionContext, work: Promise<Result>, opts: { title: string; replyAfterMs: number; started: string }): Promise<Result> {
  if (!ctx.followUp) return work;
  let timer: NodeJS.Timeout | undefined;
  // replyAfterMs 0: always answer at once and mail the result later.
  const finishedInTime =
    opts.replyAfterMs > 0 &&
    (await Promise.race([work.then(() => true, () => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), opts.replyAfterMs)))]));
  clearTimeout(timer);
  if (finishedInTime) return work;
  const delivered = ctx.followUp(opts.title, work);
  if (delivered) track(delivered);
  return {
    kind: 'text',
    text: `${opts.started}. ${opts.replyAfterMs > 0 ? `It is still running after ${seconds(opts.replyAfterMs)}; the` : 'The'} result follows in a second mail.`,
  };
}
