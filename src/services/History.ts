/**
 * History: messages sent and received, their delivery state, and pinned peer keys, kept in
 * the node's Store. Peers and usernames are stored exactly as the caller gives them; callers
 * lower-case usernames so that comparisons are case-insensitive.
 *
 * Durability contract (see Store.ts). Every write is committed when its effect succeeds, so
 * it survives a killed process; surviving a power cut takes `Store.durable` (a WAL fsync,
 * shared by concurrent callers):
 * - The message writes, on the hot path of every message, do NOT call it: `recordSent`,
 *   `recordReceived`, `setState`. Their callers call `store.durable` where the protocol
 *   makes a promise: the receiver after `recordReceived` and before its ack (the ack says
 *   "stored"), the sender before it reports a message delivered. The sender's `durable`
 *   only has to start after `recordSent`: forked right after it, it runs while the message
 *   travels and adds nothing to the round trip when the ack comes later. The delivered mark
 *   itself need not be durable before the report: lost to a power cut, the message is
 *   pending again, is resent with its id, and the receiver stores an id once. A power cut
 *   may thus lose a message nobody was told about, never one that was acked or reported
 *   delivered.
 * - The key writes, rare and security-relevant, call it themselves before they succeed:
 *   `setPin`, `pinIfAbsent` and `setPresentedKey` return only once the key is durable (and
 *   `pinIfAbsent` also when the key was pinned already, perhaps by a concurrent call whose
 *   fsync is still running).
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { WellFormed } from "../domain/Presence.ts"
import type { SqlDb } from "./Sql.ts"
import { boundState, COLUMNS, entryOf, grouped, type MessageRow } from "./HistoryRows.ts"
import { Store, type StoreShape } from "./Store.ts"

export type Mode = "plain" | "classic-3des" | "noise"
export type Direction = "sent" | "received"
/**
 * `sent` is the final state of a message to a classic peer, which sends no acks; `refused`
 * the final state of a copy its receiver acked without storing it (protocol.md 5.5: a group
 * message from someone not a member there), with the receiver's code in `refused`.
 */
export type MessageState = "pending" | "delivered" | "sent" | "received" | "refused"
/** The states an outgoing message moves to from `pending`. */
export type OutcomeState = "delivered" | "sent" | "refused"

/** One message, exactly the `history --json` shape of CLI.md. */
export interface HistoryEntry {
  readonly id: string
  readonly peer: string
  readonly direction: Direction
  readonly text: string
  /** ISO 8601 */
  readonly at: string
  readonly mode: Mode
  readonly state: MessageState
  /** Only on a message of a conversation beyond its peer: `*all*` for a copy of a broadcast. */
  readonly conversation?: string
  /** Only on a refused copy: the receiver's code (protocol.md 5.3, ACK_REFUSALS). */
  readonly refused?: string
}

/** The conversation of broadcasts: `history '*all*'`, each sent one once with its recipients. */
export { ALL } from "../domain/Conversation.ts"

/** One recipient of a broadcast and how far its copy got. */
export interface Recipient {
  readonly peer: string
  readonly mode: Mode
  readonly state: "pending" | OutcomeState
  /** Only when refused: the receiver's code. */
  readonly refused?: string
}

/**
 * A line of a conversation such as `*all*` (cli.md "history --json"): a message sent, once,
 * with every recipient's copy; or a message received in it, as in any conversation.
 */
export type ConversationEntry =
  | {
    readonly id: string
    readonly conversation: string
    readonly direction: "sent"
    readonly text: string
    readonly at: string
    readonly recipients: ReadonlyArray<Recipient>
  }
  | (HistoryEntry & { readonly direction: "received"; readonly conversation: string })

export interface Pin {
  readonly username: string
  readonly publicKey: Uint8Array
  /** ISO 8601 */
  readonly pinnedAt: string
  /** Whether the user compared its fingerprint (`trust`); a key pinned on first use is not. */
  readonly verified: boolean
}

export interface NewMessage {
  readonly id: string
  readonly peer: string
  readonly text: string
  readonly at: Date
  readonly mode: Mode
  /** Beyond its peer, the conversation it belongs to (`*all*`); one-to-one when undefined. */
  readonly conversation?: string | undefined
}

/** One message's move forward, for `setStateAll`; `refused` only with the state `refused`. */
export interface StateMark {
  readonly id: string
  readonly peer: string
  readonly state: OutcomeState
  readonly refused?: string | undefined
}

export class HistoryError extends Data.TaggedError("HistoryError")<{ readonly message: string }> {}

export interface HistoryShape {
  /** Stores an outgoing message as `pending`, before it is sent. */
  readonly recordSent: (m: NewMessage) => Effect.Effect<void, HistoryError>
  /** Stores outgoing messages (the copies of one message) as `pending`, all in one commit or none. */
  readonly recordSentAll: (ms: ReadonlyArray<NewMessage>) => Effect.Effect<void, HistoryError>
  /**
   * Moves an outgoing message forward; true when its state changed. A `delivered` or
   * `refused` message never moves again, so a late `sent` or a repeated ack returns false.
   * `refused`: the receiver's code, with the state `refused`.
   */
  readonly setState: (id: string, peer: string, state: OutcomeState, refused?: string) => Effect.Effect<boolean, HistoryError>
  /** `setState` for each of `marks`, all in one commit or none; whether each changed. */
  readonly setStateAll: (marks: ReadonlyArray<StateMark>) => Effect.Effect<ReadonlyArray<boolean>, HistoryError>
  /** Stores an incoming message once: true when new, false for an id already received from that peer. */
  readonly recordReceived: (m: NewMessage) => Effect.Effect<boolean, HistoryError>
  /**
   * Messages with `peer` (all peers when undefined) in the order this node stored them.
   * With `limit`, the last `limit` of them, still oldest first.
   */
  readonly conversation: (
    peer?: string,
    opts?: { readonly limit?: number }
  ) => Effect.Effect<ReadonlyArray<HistoryEntry>, HistoryError>
  /**
   * The messages of `conversation` (`*all*`) in the order this node stored them: each sent
   * one once, with its recipients' copies; with `limit`, the last `limit` of those.
   */
  readonly inConversation: (
    conversation: string,
    opts?: { readonly limit?: number }
  ) => Effect.Effect<ReadonlyArray<ConversationEntry>, HistoryError>
  /** Outgoing messages still waiting for an ack, oldest first. */
  readonly pendingFor: (peer?: string) => Effect.Effect<ReadonlyArray<HistoryEntry>, HistoryError>
  readonly getPin: (username: string) => Effect.Effect<Option.Option<Uint8Array>, HistoryError>
  /** Pins (or replaces) the public key of a peer, as verified: `trust`, after the user compared it. */
  readonly setPin: (username: string, key: Uint8Array, at: Date) => Effect.Effect<void, HistoryError>
  /** Whether `username` has a pinned key the user verified. */
  readonly isVerified: (username: string) => Effect.Effect<boolean, HistoryError>
  /**
   * Pins `key` unless a key is pinned already, in one statement (so two processes on one
   * data dir cannot both pin on first use), not verified; returns the key pinned now.
   */
  readonly pinIfAbsent: (username: string, key: Uint8Array, at: Date) => Effect.Effect<Uint8Array, HistoryError>
  /** The key `username` proved in a session refused for a changed key (the latest), kept for `trust`. */
  readonly presentedKey: (username: string) => Effect.Effect<Option.Option<Uint8Array>, HistoryError>
  /** Records it; `key` undefined forgets it (once trusted). */
  readonly setPresentedKey: (username: string, key: Uint8Array | undefined, at: Date) => Effect.Effect<void, HistoryError>
  readonly pins: () => Effect.Effect<ReadonlyArray<Pin>, HistoryError>
}

export class History extends Context.Service<History, HistoryShape>()("p2pchat/History") {}

interface PinRow {
  readonly username: string
  /** a Buffer from better-sqlite3, a Uint8Array from node:sqlite */
  readonly public_key: Uint8Array
  readonly pinned_at: string
  readonly verified: number
}

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Runs a synchronous database call; any throw (disk full, read-only, busy...) becomes a HistoryError. */
const attempt = <A>(what: string, f: () => A): Effect.Effect<A, HistoryError> =>
  Effect.try({ try: f, catch: (e) => new HistoryError({ message: `${what}: ${errorMessage(e)}` }) })

/** A copy: Buffers handed out by better-sqlite3 may share a pooled ArrayBuffer. */
const toBytes = (b: Uint8Array): Uint8Array => new Uint8Array(b)

/** `write`, then the fsync that makes it survive a power cut (see the header). */
const durably = <A>(durable: StoreShape["durable"], what: string, write: () => A): Effect.Effect<A, HistoryError> =>
  attempt(what, write).pipe(
    Effect.tap(() => durable.pipe(Effect.mapError((e) => new HistoryError({ message: `${what}: ${e.message}` }))))
  )

/** A message's row as bound to its INSERT. */
type Bound = {
  id: string
  peer: string
  text: string
  at: string
  mode: Mode
  conversation: string | null
}

/** Every statement History runs, prepared once, here; the methods only bind and run. */
const prepare = (db: SqlDb) => ({
  insertSent: db.prepare<Bound>(
    `INSERT INTO messages (id, peer, direction, text, at, mode, state, conversation)
     VALUES (@id, @peer, 'sent', @text, @at, @mode, 'pending', @conversation)`
  ),
  // delivered and refused are final: the receiver has answered
  updateState: db.prepare<{ id: string; peer: string; state: OutcomeState; refused: string | null }>(
    `UPDATE messages SET state = @state, refused = @refused
     WHERE peer = @peer AND direction = 'sent' AND id = @id
       AND state NOT IN ('delivered', 'refused') AND state <> @state`
  ),
  // ON CONFLICT, not INSERT OR IGNORE: OR IGNORE would also swallow CHECK violations
  insertReceived: db.prepare<Bound>(
    `INSERT INTO messages (id, peer, direction, text, at, mode, state, conversation)
     VALUES (@id, @peer, 'received', @text, @at, @mode, 'received', @conversation)
     ON CONFLICT (peer, direction, id) DO NOTHING`
  ),
  selectAll: db.prepare<[], MessageRow>(`SELECT ${COLUMNS} FROM messages ORDER BY seq`),
  selectAllLast: db.prepare<{ limit: number }, MessageRow>(
    `SELECT ${COLUMNS} FROM (SELECT seq, ${COLUMNS} FROM messages ORDER BY seq DESC LIMIT @limit) ORDER BY seq`
  ),
  selectPeer: db.prepare<{ peer: string }, MessageRow>(
    `SELECT ${COLUMNS} FROM messages WHERE peer = @peer ORDER BY seq`
  ),
  selectPeerLast: db.prepare<{ peer: string; limit: number }, MessageRow>(
    `SELECT ${COLUMNS} FROM (SELECT seq, ${COLUMNS} FROM messages WHERE peer = @peer ORDER BY seq DESC LIMIT @limit)
     ORDER BY seq`
  ),
  selectConversation: db.prepare<{ conversation: string }, MessageRow>(
    `SELECT ${COLUMNS} FROM messages WHERE conversation = @conversation ORDER BY seq`
  ),
  selectPendingAll: db.prepare<[], MessageRow>(
    `SELECT ${COLUMNS} FROM messages WHERE direction = 'sent' AND state = 'pending' ORDER BY seq`
  ),
  selectPendingPeer: db.prepare<{ peer: string }, MessageRow>(
    `SELECT ${COLUMNS} FROM messages WHERE peer = @peer AND direction = 'sent' AND state = 'pending' ORDER BY seq`
  ),
  selectPin: db.prepare<{ username: string }, Pick<PinRow, "public_key">>(
    `SELECT public_key FROM pins WHERE username = @username`
  ),
  upsertPin: db.prepare<{ username: string; key: Uint8Array; at: string }>(
    `INSERT INTO pins (username, public_key, pinned_at, verified) VALUES (@username, @key, @at, 1)
     ON CONFLICT (username) DO UPDATE SET public_key = excluded.public_key, pinned_at = excluded.pinned_at, verified = 1`
  ),
  selectVerified: db.prepare<{ username: string }, Pick<PinRow, "verified">>(
    `SELECT verified FROM pins WHERE username = @username`
  ),
  insertPinIfAbsent: db.prepare<{ username: string; key: Uint8Array; at: string }>(
    `INSERT INTO pins (username, public_key, pinned_at) VALUES (@username, @key, @at) ON CONFLICT (username) DO NOTHING`
  ),
  selectPresented: db.prepare<{ username: string }, { public_key: Uint8Array }>(
    `SELECT public_key FROM presented_keys WHERE username = @username`
  ),
  upsertPresented: db.prepare<{ username: string; key: Uint8Array; at: string }>(
    `INSERT INTO presented_keys (username, public_key, presented_at) VALUES (@username, @key, @at)
     ON CONFLICT (username) DO UPDATE SET public_key = excluded.public_key, presented_at = excluded.presented_at`
  ),
  deletePresented: db.prepare<{ username: string }>(`DELETE FROM presented_keys WHERE username = @username`),
  selectPins: db.prepare<[], PinRow>(`SELECT username, public_key, pinned_at, verified FROM pins ORDER BY username`)
})

type Statements = ReturnType<typeof prepare>

const bindMessage = (m: NewMessage): Bound => ({
  id: m.id,
  peer: m.peer,
  // A lone surrogate (a JSON escape like \ud800) would be stored as WTF-8 and read back
  // as three U+FFFD; store what will be read back.
  text: (m.text as WellFormed).toWellFormed(),
  // toISOString throws on an invalid Date: caught by attempt, reported as a HistoryError
  at: m.at.toISOString(),
  mode: m.mode,
  conversation: m.conversation ?? null
})

type MessageMethods = "recordSent" | "recordSentAll" | "setState" | "setStateAll" | "recordReceived" | "conversation" | "inConversation" | "pendingFor"

/** The message methods, on the hot path: they commit, and leave `durable` to their callers (see the header). */
const messageMethods = (db: SqlDb, s: Statements): Pick<HistoryShape, MessageMethods> => ({
  recordSent: (m) =>
    attempt("could not store message", () => {
      s.insertSent.run(bindMessage(m))
    }),
  recordSentAll: (ms) =>
    attempt("could not store messages", () => {
      const bound = ms.map(bindMessage)
      db.transaction(() => bound.forEach((b) => s.insertSent.run(b)))
    }),
  setState: (id, peer, state, refused) =>
    attempt("could not store message state", () => s.updateState.run(boundState({ id, peer, state, refused })).changes > 0),
  setStateAll: (marks) =>
    attempt("could not store message states", () =>
      db.transaction(() => marks.map((m) => s.updateState.run(boundState(m)).changes > 0))),
  recordReceived: (m) =>
    attempt("could not store message", () => s.insertReceived.run(bindMessage(m)).changes > 0),
  conversation: (peer, opts) =>
    attempt("could not read history", (): ReadonlyArray<HistoryEntry> => {
      const limit = opts?.limit
      if (limit === undefined) {
        return (peer === undefined ? s.selectAll.all() : s.selectPeer.all({ peer })).map(entryOf)
      }
      const n = Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : -1 // -1: no limit
      return (peer === undefined ? s.selectAllLast.all({ limit: n }) : s.selectPeerLast.all({ peer, limit: n })).map(entryOf)
    }),
  inConversation: (conversation, opts) =>
    attempt("could not read history", (): ReadonlyArray<ConversationEntry> => {
      const all = grouped(s.selectConversation.all({ conversation }))
      const limit = opts?.limit
      return limit === undefined || !Number.isFinite(limit) ? all : all.slice(Math.max(0, all.length - Math.max(0, Math.floor(limit))))
    }),
  pendingFor: (peer) =>
    attempt(
      "could not read pending messages",
      (): ReadonlyArray<HistoryEntry> => (peer === undefined ? s.selectPendingAll.all() : s.selectPendingPeer.all({ peer })).map(entryOf)
    )
})

/** The key methods: their writes return only once durable (see the header). */
const keyMethods = (s: Statements, durable: StoreShape["durable"]): Omit<HistoryShape, MessageMethods> => ({
  getPin: (username) =>
    attempt("could not read pinned key", () => {
      const row = s.selectPin.get({ username })
      return row === undefined ? Option.none() : Option.some(toBytes(row.public_key))
    }),
  pinIfAbsent: (username, key, at) =>
    durably(durable, `could not store pinned key of ${username}`, () => {
      s.insertPinIfAbsent.run({ username, key, at: at.toISOString() })
      return toBytes(s.selectPin.get({ username })!.public_key)
    }),
  presentedKey: (username) =>
    attempt("could not read presented key", () => {
      const row = s.selectPresented.get({ username })
      return row === undefined ? Option.none() : Option.some(toBytes(row.public_key))
    }),
  setPresentedKey: (username, key, at) =>
    durably(durable, `could not store the key ${username} presented`, () => {
      if (key === undefined) s.deletePresented.run({ username })
      else s.upsertPresented.run({ username, key, at: at.toISOString() })
    }),
  setPin: (username, key, at) =>
    durably(durable, `could not store pinned key of ${username}`, () => {
      s.upsertPin.run({ username, key, at: at.toISOString() })
    }),
  isVerified: (username) => attempt("could not read pinned key", () => s.selectVerified.get({ username })?.verified === 1),
  pins: () =>
    attempt("could not read pinned keys", (): ReadonlyArray<Pin> =>
      s.selectPins.all().map((r) => ({
        username: r.username,
        publicKey: toBytes(r.public_key),
        pinnedAt: r.pinned_at,
        verified: r.verified === 1
      })))
})

const makeHistory = (db: SqlDb, durable: StoreShape["durable"]): HistoryShape => {
  const statements = prepare(db)
  return { ...messageMethods(db, statements), ...keyMethods(statements, durable) }
}

/** The History of the Store in context. */
export const make: Effect.Effect<HistoryShape, never, Store> = Effect.gen(function*() {
  const { db, durable } = yield* Store
  // a statement that does not prepare is a bug in this file, not a runtime condition
  return yield* Effect.sync(() => makeHistory(db, durable))
})

export const layer: Layer.Layer<History, never, Store> = Layer.effect(History, make)
