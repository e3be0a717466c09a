/**
 * Conversations beyond one peer. `*all*`: the broadcasts (`send --all`, the console's
 * `all`), each stored as one copy per recipient, all with one id (History.ts), and said to
 * the receiver in the secure inner `msg` as `"to": "*all*"` (protocol.md 5.3).
 */
export const ALL = "*all*"
