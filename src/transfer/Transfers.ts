/**
 * File transfer (protocol.md 9, cli.md "send-file"): offers carried by a chat `msg`, files
 * pulled by the receiver over a secure session of their own on the chat port.
 *
 * THE CONTRACT the CLI, the console, the web UI and the bench code against. The engine
 * behind it (make, layer) lives beside it in src/transfer/.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type { FileOffer, Transfer } from "../domain/Transfer.ts"
import type { Completed } from "../dialects/noise/index.ts"
import type { StoreShape } from "../services/Store.ts"
import type { TransferRow } from "../services/TransferStore.ts"
import type { FrameChannel } from "../transport/Transport.ts"

export type { FileOffer, Transfer, TransferEvent, TransferState } from "../domain/Transfer.ts"

export class TransferError extends Data.TaggedError("TransferError")<{
  readonly reason: "Usage" | "NotFound" | "Refused" | "Io" | "Storage"
  readonly message: string
  readonly cause?: unknown
}> {}

export class Transfers extends Context.Service<Transfers, {
  /**
   * Reads and hashes PATHS (files or folders) and stores an outgoing offer for `recipients`
   * (names; a group's members), one offer per PATH. The caller sends each offer in a `msg`
   * (Initiator.sendFile does both). `target`: what the transfer's `peer` shows (`#team`);
   * default the recipient's name.
   */
  readonly prepare: (
    paths: ReadonlyArray<string>,
    recipients: ReadonlyArray<string>,
    target?: string
  ) => Effect.Effect<ReadonlyArray<FileOffer>, TransferError>
  /** An offer arrived in a stored `msg` from `sender` (the proven name): recorded, shown, accepted at once when the sender is in --accept-files-from. */
  readonly offered: (sender: string, offer: FileOffer) => Effect.Effect<void>
  /** Starts (or resumes) fetching an incoming offer; returns at once. */
  readonly accept: (id: string) => Effect.Effect<Transfer, TransferError>
  readonly decline: (id: string) => Effect.Effect<Transfer, TransferError>
  readonly list: Effect.Effect<ReadonlyArray<Transfer>, TransferError>
  readonly get: (id: string) => Effect.Effect<Transfer, TransferError>
  /**
   * Serves a file session the Responder accepted (a first frame with proto
   * `p2pchat-file/1`, its handshake complete) until it ends: the offers stored in this data
   * dir, to their recipients.
   */
  readonly serve: (ch: FrameChannel, keys: Completed) => Effect.Effect<void>
}>()("p2pchat/Transfers") {}

/**
 * Every transfer in a Store opened read-only (`p2pchat files`), oldest first; none in a
 * database older than the transfers' tables.
 */
export const readTransfers = (store: StoreShape): Effect.Effect<ReadonlyArray<Transfer>, TransferError> =>
  Effect.try({
    try: () => {
      const has = store.db.prepare<[], { name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'transfers'`).get()
      if (has === undefined) return []
      return store.db.prepare<[], TransferRow>(
        `SELECT seq, id, direction, peer, peer_name, name, size, count, sha256, state, bytes, path, reason, at, updated_at
         FROM transfers ORDER BY seq`
      ).all().map(rowToTransfer)
    },
    catch: (e) => new TransferError({ reason: "Storage", message: `could not read transfers: ${e instanceof Error ? e.message : String(e)}`, cause: e })
  })

/** A stored row as a Transfer. */
export const rowToTransfer = (row: TransferRow): Transfer => ({
  id: row.id,
  direction: row.direction,
  peer: row.peer_name,
  name: row.name,
  size: row.size,
  count: row.count,
  sha256: row.sha256,
  state: row.state,
  bytes: row.bytes,
  ...(row.path === null ? {} : { path: row.path }),
  ...(row.reason === null ? {} : { reason: row.reason }),
  at: row.at
})

