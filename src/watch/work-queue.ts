/**
 * Items worked on by `fn`, at most `limit` at a time, in the order they were pushed; results are
 * collected in the order they finish, errors apart. `weigh` tells what an item holds (bytes).
 */
export class WorkQueue<T, R> {
  readonly finished: R[] = [];
  readonly failures: unknown[] = [];
  private readonly waiting: T[] = [];
  private running = 0;
  /** Weight of the items waiting or running. */
  private weight = 0;
  private wakeUps: (() => void)[] = [];

  constructor(
    private readonly limit: number,
    private readonly fn: (item: T) => Promise<R>,
    private readonly weigh: (item: T) => number = () => 0,
  ) {}

  push(items: T[]): void {
    this.waiting.push(...items);
    for (const item of items) this.weight += this.weigh(item);
    this.startMore();
  }

  /** Items not finished yet (waiting or running). */
  get pending(): number {
    return this.waiting.length + this.running;
  }

  /** Resolves once fewer than `count` items weighing less than `weight` in all are pending (or none). */
  async below(count: number, weight = Infinity): Promise<void> {
    while (this.pending > 0 && (this.pending >= count || this.weight >= weight)) await new Promise<void>((wake) => this.wakeUps.push(wake));
  }

  /** Resolves once nothing is pending. */
  idle(): Promise<void> {
    return this.below(1);
  }

  takeFinished(): R[] {
    return this.finished.splice(0);
  }

  private startMore(): void {
    while (this.running < this.limit && this.waiting.length) {
      const item = this.waiting.shift()!;
      this.running++;
      void this.fn(item)
        .then(
          (result) => void this.finished.push(result),
          (err: unknown) => void this.failures.push(err),
        )
        .finally(() => {
          this.running--;
          this.weight -= this.weigh(item);
          this.startMore();
          for (const wake of this.wakeUps.splice(0)) wake();
        });
    }
  }
}

/** `fn` over `items`, at most `limit` at a time; the first failure is thrown once all are done. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const work = new WorkQueue(limit, fn);
  work.push(items);
  await work.idle();
  if (work.failures.length) throw work.failures[0];
  return work.takeFinished();
}
