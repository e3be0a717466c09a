/**
 * Classic 3DES (protocol: "Classic frames"): `{"key": a}` answered by `{"key": b}`, then
 * `{"encrypted_message": base64}` under the key both derive. NOT secure: 19 possible keys.
 *
 *   initiator  to a p2pchat peer: one key exchange per connection, then each message with
 *              its `id` and `from`, acked; to a classic peer: a key exchange before every
 *              frame (its program expects one), a long text split, every write paced, no acks
 *   responder  answers each key frame with its own number (the newest key wins) and opens
 *              encrypted messages under the current key (legacy.accept)
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import { randomUUID } from "node:crypto"
import * as Semaphore from "effect/Semaphore"
import {
  classicDecrypt,
  classicEncrypt,
  classicKey24,
  classicShared,
  randomClassicKey,
  splitForClassic
} from "../domain/Classic.ts"
import type { EncryptedFrame } from "../domain/Frames.ts"
import type { FrameChannel } from "../transport/Transport.ts"
import type { OutgoingSession, Received } from "./Dialect.ts"
import { nextAck, type Pace, writeFrame } from "./wire.ts"
import { fail, type SessionError } from "./noise/channel.ts"

/** The responder's half of a key exchange: its own number, and the key both now share. */
export const answerKey = (theirs: number): { readonly own: number; readonly key24: Buffer } => {
  const own = randomClassicKey()
  return { own, key24: classicKey24(classicShared(theirs, own)) }
}

/** An encrypted frame opened under the connection's key. */
export const received = (key24: Buffer | undefined, frame: EncryptedFrame): Effect.Effect<Received, SessionError> => {
  if (key24 === undefined) return fail("NoKey", "encrypted_message before any key exchange")
  const r = classicDecrypt(key24, frame.encrypted_message)
  if (!r.ok) return fail("Decrypt", `encrypted_message does not decrypt under the session key: ${r.reason}`)
  return Effect.succeed({
    inner: { type: "msg", id: frame.id ?? randomUUID(), text: r.text, sentAt: "" },
    mode: "classic-3des",
    claimedFrom: frame.from,
    wantsAck: frame.id !== undefined
  })
}

export interface InitiateOptions {
  /** A p2pchat peer (ids, acks, one key per connection) or a classic one. */
  readonly p2p: boolean
  readonly from: string | undefined
  readonly pace: Pace
  /** How long the peer has to answer a key. */
  readonly answerTimeoutMs: number
}

export const initiate = (ch: FrameChannel, options: InitiateOptions): OutgoingSession => {
  let waiter: Deferred.Deferred<number, SessionError> | undefined
  let linkKey: Buffer | undefined
  const lock = Semaphore.makeUnsafe(1)
  const settle = (outcome: Effect.Effect<number, SessionError>) => {
    const w = waiter
    waiter = undefined
    if (w !== undefined) Deferred.doneUnsafe(w, outcome)
  }

  /** Sends our number and waits for the peer's (the reader routes it here). */
  const exchange = (write: (frame: object) => Effect.Effect<void, SessionError>) =>
    Effect.gen(function*() {
      const own = randomClassicKey()
      const answer = Deferred.makeUnsafe<number, SessionError>()
      waiter = answer
      yield* write({ key: own })
      const theirs = yield* Deferred.await(answer).pipe(
        Effect.timeoutOrElse({
          duration: options.answerTimeoutMs,
          orElse: () => fail("Timeout", `did not answer the key exchange within ${options.answerTimeoutMs / 1000} s`)
        })
      )
      return classicKey24(classicShared(own, theirs))
    })

  const write = (frame: object) => writeFrame(ch, frame)
  const paced = (frame: object) => options.pace(write(frame))
  const from = options.from !== undefined ? { from: options.from } : {}

  const sendP2p = (m: { readonly id: string; readonly text: string }) =>
    Effect.gen(function*() {
      const key24 = linkKey ?? (yield* lock.withPermit(Effect.suspend(() =>
        linkKey !== undefined
          ? Effect.succeed(linkKey)
          : Effect.tap(exchange(write), (k) => Effect.sync(() => void (linkKey = k)))
      )))
      yield* write({ encrypted_message: classicEncrypt(key24, m.text), id: m.id, ...from })
    })

  const sendClassic = (m: { readonly text: string }) =>
    Effect.forEach(splitForClassic(m.text, true), (part) =>
      lock.withPermit(Effect.gen(function*() {
        const key24 = yield* exchange(paced)
        yield* paced({ encrypted_message: classicEncrypt(key24, part) })
      })), { discard: true })

  return {
    mode: "classic-3des",
    acked: options.p2p,
    send: options.p2p ? sendP2p : sendClassic,
    replies: nextAck(ch, (key) => settle(Effect.succeed(key))).pipe(Effect.tapError((e) => Effect.sync(() => settle(Effect.fail(e)))))
  }
}

