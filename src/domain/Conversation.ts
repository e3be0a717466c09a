/**
 * Conversations beyond one peer. `*all*`: the broadcasts (`send --all`, the console's
 * `all`), each stored as one copy per recipient, all with one id (History.ts), and said to
 * the receiver in the secure inner `msg` as `"to": "*all*"` (protocol.md 5.3).
 */
export const ALL = "*all*"

/**
 * A group's conversation: `#` and its id (the id, not the name: names are local labels that
 * two groups may share). Stored in the `conversation` column and sent as the inner `msg`'s `to`.
 */
export const groupConversation = (groupId: string): string => `#${groupId}`
/** The group id of a conversation, if it is a group's. */
export const groupIdOf = (conversation: string | undefined): string | undefined =>
  conversation !== undefined && conversation.startsWith("#") ? conversation.slice(1) : undefined
