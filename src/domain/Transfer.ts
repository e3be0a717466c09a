/**
 * File transfer's data (protocol.md 9): the offer a chat `msg` carries, and a transfer as
 * the user interfaces show it. Pure types, so that Events and the renderers can name them.
 */

/** What a chat `msg` carries in its `file` field: an offer of one file or one folder. */
export interface FileOffer {
  /** The offer's id: a UUID chosen by the sender. */
  readonly id: string
  /** The file's or folder's name (the last part of the path given to send-file). */
  readonly name: string
  /** Total bytes of every file in it. */
  readonly size: number
  /** How many files (1 for a file). */
  readonly count: number
  /** Lowercase hex SHA-256: of the file, or of the folder's manifest (protocol.md 9). */
  readonly sha256: string
}

export type TransferState =
  | "offered" // in: waiting for accept/decline; out: sent, not fetched yet
  | "receiving" // in: being fetched; out: being served
  | "paused" // in: connection lost, disk full or node stopped: resumes by itself
  | "done" // in: every file verified and in place; out: the receiver said it has it all
  | "failed" // in: a hash that never matched, a file gone at the sender, too big: never shown as received
  | "declined" // either side: the receiver declined

/** One transfer as history, `files --json` and the web UI show it. */
export interface Transfer {
  readonly id: string
  readonly direction: "in" | "out"
  /** The other side: the sender (in), or the recipient or `#group` (out). */
  readonly peer: string
  readonly name: string
  readonly size: number
  readonly count: number
  readonly sha256: string
  readonly state: TransferState
  /** Bytes received and verified (in) or served (out) so far. */
  readonly bytes: number
  /** In: where it was (or will be) saved, absolute. */
  readonly path?: string
  /** Why it failed or paused, in words. */
  readonly reason?: string
  readonly at: string
}

/** A progress tick (at most 4 a second per transfer) and every change of state. */
export interface TransferEvent extends Transfer {
  readonly event: "file"
  /** Bytes per second over the last seconds, while receiving. */
  readonly rate?: number
}
