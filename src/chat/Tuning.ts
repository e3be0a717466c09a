/**
 * The sending side's timers; tests shorten them.
 */
import * as Context from "effect/Context"

export interface InitiatorTuning {
  /** How long a p2pchat peer has to ack a message (and any peer to answer a key). */
  readonly ackTimeoutMs: number
  readonly connectTimeoutMs: number
  /** The pause between two frames to a classic peer (protocol: "Writing to a classic peer"). */
  readonly classicPauseMs: number
  /** How long a secure handshake may take once connected; default the larger of the two above. */
  readonly handshakeTimeoutMs?: number | undefined
  /** How long a pending message is retried; default PENDING_EXPIRY_MS. */
  readonly pendingExpiryMs?: number | undefined
  /**
   * Besides each registry change (a peer appears, comes back online, moves), pending messages
   * to online peers are retried this often; default RETRY_EVERY_MS. It catches a peer that
   * restarted before it was seen away, which the registry does not report as a change.
   */
  readonly retryEveryMs?: number | undefined
}

export const DEFAULT_TUNING: InitiatorTuning = { ackTimeoutMs: 5000, connectTimeoutMs: 5000, classicPauseMs: 100 }

/** A pending message older than this (by its `at`) is no longer retried; it stays in history. */
export const PENDING_EXPIRY_MS = 7 * 24 * 60 * 60 * 1000

export const RETRY_EVERY_MS = 30_000

export const InitiatorTuning = Context.Reference<InitiatorTuning>("p2pchat/InitiatorTuning", {
  defaultValue: () => DEFAULT_TUNING
})

export const handshakeTimeoutOf = (t: InitiatorTuning): number => t.handshakeTimeoutMs ?? Math.max(t.connectTimeoutMs, t.ackTimeoutMs)

export const secondsText = (ms: number): string => `${ms / 1000} s`
