/**
 * Trust: who a peer is, and whether to believe it (protocol: "Trust"). One service owns the
 * pinned keys, the keys peers presented in refused sessions, and the rules:
 *
 * - a secure session's proven key is pinned on first use for its (case-folded) name, not
 *   verified until the user compares its fingerprint (`trust`); a
 *   different key later refuses the session (KeyChanged) and is kept as "presented", so
 *   that `trust USER FINGERPRINT` can accept exactly the key that peer proved, once the
 *   user has compared its fingerprint (an announced, unproven key is never trusted);
 * - a name whose announced key is not the pinned one gets no secure messages until the
 *   user decides (`pinnedMismatch`);
 * - a pinned name is proven by its key alone: the responder accepts a session proving the
 *   pin whatever is announced, and the sending side sends it secure messages only;
 * - outside a secure session nothing proves a name: a plain `from` is believed only from
 *   the address the registry knows that name at, and never for a pinned name the registry
 *   does not know (`believeFrom`).
 *
 * What the registry says (announced ids, addresses) is an input to these rules, never a
 * dependency: presence is a hint.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { LookIndex } from "../domain/Confusables.ts"
import { fingerprint, fingerprintMatches, parseFingerprint } from "../domain/Fingerprint.ts"
import type { Peer } from "../domain/Peer.ts"
import { usernameKey } from "../domain/Presence.ts"
import { idToKey, keyId } from "../services/Crypto.ts"
import { History, type HistoryError } from "../services/History.ts"

/** Who a secure handshake authenticated: the name it claimed and the key it proved. */
export interface Authenticated {
  readonly username: string
  readonly key: Uint8Array
}

export type TrustResult =
  | { readonly _tag: "FirstUse" }
  | { readonly _tag: "Match" }
  | {
    readonly _tag: "Changed"
    readonly pinned: Uint8Array
    readonly pinnedFingerprint: string
    readonly presentedFingerprint: string
  }

export class TrustError extends Data.TaggedError("TrustError")<{
  /** BadFingerprint: not a fingerprint; NoMatch: no key the peer proved has that fingerprint. */
  readonly reason: "BadFingerprint" | "NoMatch" | "Storage"
  readonly message: string
  readonly cause?: unknown
}> {}

const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0

/**
 * Compares `remoteKey` with the key pinned for `username` (case-folded). The first key seen
 * for a name is pinned (FirstUse); a different key later is Changed, pins nothing, and is
 * kept as the key that name presented.
 */
export const checkTrust = (username: string, remoteKey: Uint8Array): Effect.Effect<TrustResult, HistoryError, History> =>
  Effect.gen(function*() {
    const history = yield* History
    const name = usernameKey(username)
    const existing = yield* history.getPin(name)
    // The first key seen is pinned in one statement: of two first sessions (even in two
    // processes on one data dir) one pins, and the other compares with it.
    const pinned = Option.isSome(existing) ? existing.value : yield* history.pinIfAbsent(name, remoteKey, yield* now)
    if (sameBytes(pinned, remoteKey)) return Option.isSome(existing) ? { _tag: "Match" } as const : { _tag: "FirstUse" } as const
    yield* history.setPresentedKey(name, remoteKey, yield* now)
    return {
      _tag: "Changed",
      pinned,
      pinnedFingerprint: fingerprint(pinned),
      presentedFingerprint: fingerprint(remoteKey)
    } as const
  })

/** Pins `key` for `username` (case-folded), replacing any pinned key. */
export const trust = (username: string, key: Uint8Array): Effect.Effect<void, HistoryError, History> =>
  Effect.gen(function*() {
    yield* (yield* History).setPin(usernameKey(username), key, yield* now)
  })

/** A session refused because its name's key changed: what the user is told, and the key for `trust`. */
export interface KeyChanged {
  readonly username: string
  readonly presentedKey: Uint8Array
  readonly message: string
}

const keyChanged = (
  username: string,
  presentedKey: Uint8Array,
  changed: { readonly pinnedFingerprint: string; readonly presentedFingerprint: string }
): KeyChanged => ({
  username,
  presentedKey,
  message: `refusing the secure session: ${username}'s key has CHANGED. ` +
      `Pinned fingerprint:    ${changed.pinnedFingerprint}. ` +
      `Presented fingerprint: ${changed.presentedFingerprint}. ` +
      `Someone may be impersonating ${username}, or ${username} made a new identity. ` +
      `Compare the fingerprint with ${username} in person or by phone, then run \`trust ${username} FINGERPRINT\` ` +
      `with the fingerprint ${username} read you to accept the new key.`
})

/**
 * What `trust USER` without a fingerprint says (it pins nothing): the fingerprints of the keys
 * USER proved, pinned and offered (presented in a refused session), and how to choose one.
 */
export const trustChoices = (
  username: string,
  pinned: Option.Option<Uint8Array>,
  presented: Option.Option<Uint8Array>
): ReadonlyArray<string> => [
  Option.isSome(pinned) ? `${username}'s pinned key: ${fingerprint(pinned.value)}` : `no key pinned for ${username}`,
  Option.isSome(presented)
    ? `${username} offered:        ${fingerprint(presented.value)}  (proven in a refused secure session)`
    : `${username} has offered no other key in a secure session`,
  `nothing trusted: give the fingerprint you compared with ${username}: \`trust ${username} FINGERPRINT\` ` +
  `(all 60 digits, or at least the first 20)`
]

/** The pinned key of a name that announces another one, or none: secure messages to it wait. */
export interface PinMismatch {
  readonly pinnedFingerprint: string
  /** undefined: it announces no key. */
  readonly announcedFingerprint: string | undefined
}

export class Trust extends Context.Service<Trust, {
  /**
   * The rule that decides a secure session, once its handshake proved `peer`'s key: none
   * to accept it, or why it is refused.
   */
  readonly verifySession: (peer: Authenticated) => Effect.Effect<Option.Option<KeyChanged>, HistoryError>
  /**
   * `trust USER FINGERPRINT`: pins the key USER proved in a handshake (the one it presented
   * in the last refused session, or the one pinned already) whose fingerprint is
   * `fingerprintText` (60 digits, or at least the first 20; spaces optional). Any other
   * fingerprint pins nothing (NoMatch). Returns the fingerprint now pinned.
   */
  readonly trustPeer: (username: string, fingerprintText: string) => Effect.Effect<string, TrustError>
  /** Whether `peer` announces a key other than the one pinned for its name, or none. */
  readonly pinnedMismatch: (peer: Peer) => Effect.Effect<Option.Option<PinMismatch>>
  readonly pinned: (username: string) => Effect.Effect<Option.Option<Uint8Array>, HistoryError>
  /** The pinned names a person could take for `username` (Unicode TR39 skeletons), not itself. */
  readonly pinnedLookAlikes: (username: string) => Effect.Effect<ReadonlyArray<string>, HistoryError>
  readonly presented: (username: string) => Effect.Effect<Option.Option<Uint8Array>, HistoryError>
}>()("p2pchat/Trust") {}

/**
 * Whether a plain message's `from` names its sender: only when the registry knows that name
 * at the sender's own address, or does not know it (`claimed` none) and it has no pinned key
 * (a pinned name is proven by its key alone: an offline contact's name proves nothing).
 */
export const believeFrom = (claimed: Option.Option<Peer>, address: string, pinned: boolean): boolean =>
  Option.isNone(claimed) ? !pinned : claimed.value.address === address

export const make = Effect.gen(function*() {
  const history = yield* History
  const withHistory = <A, E>(effect: Effect.Effect<A, E, History>) => Effect.provideService(effect, History, history)

  // The pinned names by confusable key: read from the pins once, then kept up to date with
  // the pins this node makes (a pin made by another process on the data dir is seen at the
  // next start: it only ever costs a look-alike warning).
  const looks = new LookIndex()
  const pinnedLooks = yield* Effect.cached(Effect.map(history.pins(), (pins) => {
    for (const p of pins) looks.add(p.username)
    return looks
  }))
  const filed = (username: string) => Effect.ignore(Effect.map(pinnedLooks, (index) => index.add(username)))

  const verifySession = (peer: Authenticated) =>
    Effect.map(
      withHistory(checkTrust(peer.username, peer.key)).pipe(Effect.tap((r) => r._tag === "FirstUse" ? filed(peer.username) : Effect.void)),
      (result) => result._tag === "Changed" ? Option.some(keyChanged(peer.username, peer.key, result)) : Option.none()
    )

  const trustPeer = (username: string, fingerprintText: string) =>
    Effect.gen(function*() {
      const parsed = parseFingerprint(fingerprintText)
      if ("problem" in parsed) {
        return yield* new TrustError({ reason: "BadFingerprint", message: `nothing trusted: ${parsed.problem}` })
      }
      const name = usernameKey(username)
      const presented = Option.getOrUndefined(yield* history.presentedKey(name))
      const pinned = Option.getOrUndefined(yield* history.getPin(name))
      const matching = [presented, pinned].filter((k): k is Uint8Array => k !== undefined && fingerprintMatches(parsed.digits, k))
      if (matching.length === 0 || (matching.length === 2 && !sameBytes(matching[0]!, matching[1]!))) {
        return yield* new TrustError({
          reason: "NoMatch",
          message: matching.length === 0
            ? `nothing trusted: no key ${username} proved in a secure session has the fingerprint ` +
              `${fingerprintText.trim()}; \`trust ${username}\` shows the fingerprints of its keys: compare them with ${username} again`
            : `nothing trusted: both keys of ${username} start with these digits; give all 60 digits`
        })
      }
      const key = matching[0]!
      yield* withHistory(trust(name, key))
      yield* filed(name)
      if (presented !== undefined && sameBytes(presented, key)) yield* history.setPresentedKey(name, undefined, yield* now)
      return fingerprint(key)
    }).pipe(
      Effect.catchTag("HistoryError", (e) => Effect.fail(new TrustError({ reason: "Storage", message: e.message, cause: e })))
    )

  const pinnedMismatch = (peer: Peer): Effect.Effect<Option.Option<PinMismatch>> =>
    Effect.gen(function*() {
      const pin = yield* history.getPin(peer.key).pipe(Effect.orElseSucceed(() => Option.none<Uint8Array>()))
      if (Option.isNone(pin) || keyId(pin.value) === peer.id) return Option.none()
      return Option.some({
        pinnedFingerprint: fingerprint(pin.value),
        announcedFingerprint: peer.id === undefined ? undefined : fingerprint(idToKey(peer.id))
      })
    })

  return Trust.of({
    verifySession,
    trustPeer,
    pinnedMismatch,
    pinned: (username) => history.getPin(usernameKey(username)),
    pinnedLookAlikes: (username) => Effect.map(pinnedLooks, (index) => index.find(username)),
    presented: (username) => history.presentedKey(usernameKey(username))
  })
})

export const layer: Layer.Layer<Trust, never, History> = Layer.effect(Trust, make)
