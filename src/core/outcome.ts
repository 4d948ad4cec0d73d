import type { ReplyMessage } from '../mail/reply';

/** What processMessage decided for one message. */
export type Outcome =
  | { kind: 'silent'; reason: string }
  /** `key` names the journal entry to mark replied once the reply has been handed over. */
  | { kind: 'reply'; key: string; reply: ReplyMessage; decision: 'executed' | 'rejected' | 'help' | 'resent' | 'confirm-requested' };
