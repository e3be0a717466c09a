/**
 * File transfers in the Store (StoreSchema step 6, protocol.md 9): the offers this node
 * sent ('out', with their recipients and, per file, the source read, its size and mtime when
 * hashed, its SHA-256 and per-chunk CRC-32s) and those it received ('in', with the
 * manifest once fetched, each file's .part and where it landed). Every process on a data
 * dir reads the same rows: the node serves offers that `send-file` stored, and fetches
 * transfers that `accept` started. Synchronous SQLite, errors as HistoryError (as GroupStore).
 */
import * as Effect from "effect/Effect"
import type { FileOffer, TransferState } from "../domain/Transfer.ts"
import { HistoryError } from "./History.ts"
import type { SqlDb } from "./Sql.ts"

export interface TransferRow {
  readonly seq: number
  readonly id: string
  readonly direction: "in" | "out"
  /** in: the sender's name key; out: the target as given (a name's key, or `#group`). */
  readonly peer: string
  /** in: the sender as proven; out: the target as the user wrote it. */
  readonly peer_name: string
  readonly name: string
  readonly size: number
  readonly count: number
  readonly sha256: string
  readonly state: TransferState
  readonly bytes: number
  readonly path: string | null
  readonly reason: string | null
  readonly at: string
  readonly updated_at: string
}

export interface ItemRow {
  readonly transfer: number
  readonly idx: number
  /** Relative, `/` between parts: as offered (in: as the sender wrote it). */
  readonly path: string
  readonly size: number
  readonly sha256: string
  /** 4 bytes (big-endian CRC-32) per chunk. */
  readonly sums: Uint8Array
  readonly source: string | null
  readonly mtime_ms: number | null
  readonly part: string | null
  readonly saved: string | null
}

export interface RecipientRow {
  readonly transfer: number
  readonly name_key: string
  readonly name: string
  readonly state: TransferState
  readonly bytes: number
}

export type NewItem = Omit<ItemRow, "transfer" | "part" | "saved" | "source" | "mtime_ms"> & {
  readonly source?: string | null
  readonly mtime_ms?: number | null
  readonly part?: string | null
}

const attempt = <A>(what: string, f: () => A): Effect.Effect<A, HistoryError> =>
  Effect.try({ try: f, catch: (e) => new HistoryError({ message: `${what}: ${e instanceof Error ? e.message : String(e)}` }) })

const COLUMNS = `seq, id, direction, peer, peer_name, name, size, count, sha256, state, bytes, path, reason, at, updated_at`

const bytesOf = (b: unknown): Uint8Array => b instanceof Uint8Array ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(0)

const transferStatements = (db: SqlDb) => ({
    insert: db.prepare<{
      id: string; direction: string; peer: string; peer_name: string; name: string; size: number; count: number; sha256: string;
      state: string; at: string
    }>(
      `INSERT INTO transfers (id, direction, peer, peer_name, name, size, count, sha256, state, at, updated_at)
       VALUES (@id, @direction, @peer, @peer_name, @name, @size, @count, @sha256, @state, @at, @at)
       ON CONFLICT (direction, peer, id) DO NOTHING`
    ),
    bySeq: db.prepare<{ seq: number }, TransferRow>(`SELECT ${COLUMNS} FROM transfers WHERE seq = @seq`),
    byKey: db.prepare<{ direction: string; peer: string; id: string }, TransferRow>(
      `SELECT ${COLUMNS} FROM transfers WHERE direction = @direction AND peer = @peer AND id = @id`
    ),
    byId: db.prepare<{ id: string }, TransferRow>(`SELECT ${COLUMNS} FROM transfers WHERE id = @id ORDER BY seq DESC`),
    outById: db.prepare<{ id: string }, TransferRow>(`SELECT ${COLUMNS} FROM transfers WHERE id = @id AND direction = 'out'`),
    all: db.prepare<[], TransferRow>(`SELECT ${COLUMNS} FROM transfers ORDER BY seq`),
    inState: db.prepare<{ a: string; b: string }, TransferRow>(
      `SELECT ${COLUMNS} FROM transfers WHERE direction = 'in' AND state IN (@a, @b) ORDER BY seq`
    ),
    setPath: db.prepare<{ seq: number; path: string }>(`UPDATE transfers SET path = @path WHERE seq = @seq`),
    setState: db.prepare<{ seq: number; state: string; bytes: number; path: string | null; reason: string | null; at: string }>(
      `UPDATE transfers SET state = @state, bytes = @bytes, path = @path, reason = @reason, updated_at = @at WHERE seq = @seq`
    )
})

const itemStatements = (db: SqlDb) => ({
    addItem: db.prepare<{
      transfer: number; idx: number; path: string; size: number; sha256: string; sums: Uint8Array;
      source: string | null; mtime_ms: number | null; part: string | null
    }>(
      `INSERT INTO transfer_items (transfer, idx, path, size, sha256, sums, source, mtime_ms, part)
       VALUES (@transfer, @idx, @path, @size, @sha256, @sums, @source, @mtime_ms, @part)`
    ),
    items: db.prepare<{ seq: number }, ItemRow>(
      `SELECT transfer, idx, path, size, sha256, sums, source, mtime_ms, part, saved FROM transfer_items WHERE transfer = @seq ORDER BY idx`
    ),
    item: db.prepare<{ seq: number; idx: number }, ItemRow>(
      `SELECT transfer, idx, path, size, sha256, sums, source, mtime_ms, part, saved FROM transfer_items
       WHERE transfer = @seq AND idx = @idx`
    ),
    itemCount: db.prepare<{ seq: number }, { n: number }>(`SELECT count(*) AS n FROM transfer_items WHERE transfer = @seq`),
    setPart: db.prepare<{ seq: number; idx: number; part: string | null }>(
      `UPDATE transfer_items SET part = @part WHERE transfer = @seq AND idx = @idx`
    ),
    setSaved: db.prepare<{ seq: number; idx: number; saved: string }>(
      `UPDATE transfer_items SET saved = @saved, part = NULL WHERE transfer = @seq AND idx = @idx`
    ),
    addRecipient: db.prepare<{ transfer: number; name_key: string; name: string }>(
      `INSERT INTO transfer_recipients (transfer, name_key, name, state) VALUES (@transfer, @name_key, @name, 'offered')
       ON CONFLICT (transfer, name_key) DO NOTHING`
    ),
    recipients: db.prepare<{ seq: number }, RecipientRow>(
      `SELECT transfer, name_key, name, state, bytes FROM transfer_recipients WHERE transfer = @seq ORDER BY name_key`
    ),
    setRecipient: db.prepare<{ seq: number; key: string; state: string; served: number }>(
      `UPDATE transfer_recipients SET state = @state, bytes = bytes + @served WHERE transfer = @seq AND name_key = @key`
    )
})

/** The state of an outgoing offer from its recipients': done when each is done or declined. */
const outState = (rows: ReadonlyArray<RecipientRow>): TransferState => {
  if (rows.length > 0 && rows.every((r) => r.state === "declined")) return "declined"
  if (rows.every((r) => r.state === "done" || r.state === "declined")) return "done"
  if (rows.some((r) => r.state === "receiving")) return "receiving"
  if (rows.some((r) => r.state === "paused")) return "paused"
  if (rows.some((r) => r.state === "failed")) return "failed"
  return "offered"
}

const item = (r: ItemRow): ItemRow => ({ ...r, sums: bytesOf(r.sums) })

/** The transfers' rows. */
const transferApi = (db: SqlDb, s: ReturnType<typeof transferStatements> & ReturnType<typeof itemStatements>) => ({
    /** Stores an outgoing offer, its files and its recipients in one transaction. */
    addOut: (
      offer: FileOffer,
      target: { readonly key: string; readonly name: string },
      recipients: ReadonlyArray<{ readonly key: string; readonly name: string }>,
      items: ReadonlyArray<NewItem>,
      at: Date
    ) =>
      attempt("could not store the offer", () =>
        db.transaction(() => {
          s.insert.run({ ...offer, direction: "out", peer: target.key, peer_name: target.name, state: "offered", at: at.toISOString() })
          const row = s.byKey.get({ direction: "out", peer: target.key, id: offer.id })!
          items.forEach((i) => s.addItem.run({ source: null, mtime_ms: null, part: null, ...i, transfer: row.seq }))
          recipients.forEach((r) => s.addRecipient.run({ transfer: row.seq, name_key: r.key, name: r.name }))
          return row
        }, "immediate")),
    /** Records an incoming offer once per sender and id; true when it is new. */
    addIn: (sender: { readonly key: string; readonly name: string }, offer: FileOffer, at: Date) =>
      attempt("could not store the offer", () =>
        s.insert.run({ ...offer, direction: "in", peer: sender.key, peer_name: sender.name, state: "offered", at: at.toISOString() })
          .changes > 0),
    inOf: (senderKey: string, id: string) => attempt("could not read transfers", () => s.byKey.get({ direction: "in", peer: senderKey, id })),
    bySeq: (seq: number) => attempt("could not read transfers", () => s.bySeq.get({ seq })),
    /** Every transfer with this id (the newest first): an offer out, and offers in from any sender. */
    byId: (id: string) => attempt("could not read transfers", () => s.byId.all({ id })),
    outById: (id: string) => attempt("could not read transfers", () => s.outById.get({ id })),
    list: attempt("could not read transfers", () => s.all.all()),
    /** Incoming transfers being fetched or paused: what a node resumes. */
    active: attempt("could not read transfers", () => s.inState.all({ a: "receiving", b: "paused" })),
    setState: (
      seq: number,
      state: TransferState,
      fields: { readonly bytes: number; readonly path: string | null; readonly reason: string | null },
      at: Date
    ) => attempt("could not store the transfer", () => void s.setState.run({ seq, state, ...fields, at: at.toISOString() })),
    setPath: (seq: number, path: string) => attempt("could not store the transfer", () => void s.setPath.run({ seq, path }))
})

/** Their files, and an outgoing offer's recipients. */
const itemApi = (db: SqlDb, s: ReturnType<typeof transferStatements> & ReturnType<typeof itemStatements>) => ({
    items: (seq: number) => attempt("could not read transfers", () => s.items.all({ seq }).map(item)),
    item: (seq: number, idx: number) =>
      attempt("could not read transfers", () => {
        const r = s.item.get({ seq, idx })
        return r === undefined ? undefined : item(r)
      }),
    /** Stores an incoming offer's manifest (and sums), once: false when it was stored already. */
    setItems: (seq: number, items: ReadonlyArray<NewItem>) =>
      attempt("could not store the transfer", () =>
        db.transaction(() => {
          if (s.itemCount.get({ seq })!.n > 0) return false
          items.forEach((i) => s.addItem.run({ source: null, mtime_ms: null, part: null, ...i, transfer: seq }))
          return true
        }, "immediate")),
    setPart: (seq: number, idx: number, part: string | null) => attempt("could not store the transfer", () => void s.setPart.run({ seq, idx, part })),
    setSaved: (seq: number, idx: number, saved: string) => attempt("could not store the transfer", () => void s.setSaved.run({ seq, idx, saved })),
    recipients: (seq: number) => attempt("could not read transfers", () => s.recipients.all({ seq })),
    /**
     * A recipient's state, with `served` bytes more served to it; the offer's own state and
     * bytes follow from its recipients'.
     */
    setRecipient: (seq: number, key: string, state: TransferState, served: number, at: Date) =>
      attempt("could not store the transfer", () =>
        db.transaction(() => {
          s.setRecipient.run({ seq, key, state, served })
          const rows = s.recipients.all({ seq })
          const row = s.bySeq.get({ seq })!
          s.setState.run({
            seq,
            state: outState(rows),
            bytes: rows.reduce((n, r) => n + r.bytes, 0),
            path: row.path,
            reason: row.reason,
            at: at.toISOString()
          })
        }, "immediate"))
})

export const makeTransferStore = (db: SqlDb) => {
  const s = { ...transferStatements(db), ...itemStatements(db) }
  return { ...transferApi(db, s), ...itemApi(db, s) }
}

export type TransferStore = ReturnType<typeof makeTransferStore>

/** The offer a stored outgoing transfer makes (what its `msg` carries). */
export const offerOf = (row: Pick<TransferRow, "id" | "name" | "size" | "count" | "sha256">): FileOffer => ({
  id: row.id,
  name: row.name,
  size: row.size,
  count: row.count,
  sha256: row.sha256
})
