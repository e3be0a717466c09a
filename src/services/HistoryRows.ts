/**
 * The rows of History's `messages` table as History reads and writes them: the columns it
 * selects, a row as a `history --json` entry, a conversation's rows grouped by message, and a
 * state mark as bound to its UPDATE.
 */
import type { ConversationEntry, HistoryEntry, Recipient, StateMark } from "./History.ts"

export const COLUMNS = "id, peer, direction, text, at, mode, state, conversation, refused"

/** A row of COLUMNS: a HistoryEntry, with NULL for a one-to-one message's conversation and a code not refused. */
export type MessageRow = Omit<HistoryEntry, "conversation" | "refused"> & {
  readonly conversation: string | null
  readonly refused: string | null
}

/** The entry of a row: `conversation` and `refused` only when it has them, so other messages keep their shape. */
export const entryOf = ({ conversation, refused, ...rest }: MessageRow): HistoryEntry => ({
  ...rest,
  ...(conversation === null ? {} : { conversation }),
  ...(refused === null ? {} : { refused })
})

/** A conversation's rows grouped: each sent id once (where it was first stored), with its copies. */
export const grouped = (rows: ReadonlyArray<MessageRow>): Array<ConversationEntry> => {
  const out: Array<ConversationEntry> = []
  const sent = new Map<string, Array<Recipient>>()
  for (const row of rows) {
    const { id, peer, text, at, mode, state, conversation, refused } = row
    if (row.direction === "received") {
      out.push({ ...entryOf(row), direction: "received", conversation: conversation! })
      continue
    }
    const recipient: Recipient = { peer, mode, state: state as Recipient["state"], ...(refused === null ? {} : { refused }) }
    const known = sent.get(id)
    if (known !== undefined) {
      known.push(recipient)
      continue
    }
    const recipients = [recipient]
    sent.set(id, recipients)
    out.push({ id, conversation: conversation!, direction: "sent", text, at, recipients })
  }
  return out
}

/** A mark as bound to its UPDATE: a code only with the state `refused`. */
export const boundState = (m: StateMark) => ({
  id: m.id,
  peer: m.peer,
  state: m.state,
  refused: m.state === "refused" ? m.refused ?? null : null
})
