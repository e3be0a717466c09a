/**
 * Frames on the chat connection (PROTOCOL.md 2), classic and p2pchat/1, and the inner
 * objects of a secure session. Each is a Schema, decoded at the edge.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { FileOfferSchema } from "./FileWire.ts"
import { GroupState } from "./Group.ts"
import { oneLine, Username } from "./Presence.ts"

/** A message id: a UUID from p2pchat senders; any short printable token is accepted. */
export const MessageId = Schema.String.check(
  Schema.makeFilter((s: string) => /^[\x21-\x7e]{1,128}$/.test(s) || "expected a message id of 1-128 printable ASCII characters")
)
const Base64 = Schema.String.check(
  Schema.makeFilter((s: string) => /^[A-Za-z0-9+/]*={0,2}$/.test(s) || "expected base64")
)

export const PlainFrame = Schema.Struct({
  unencrypted_message: Schema.String,
  id: Schema.optionalKey(MessageId),
  from: Schema.optionalKey(Username)
})
export const KeyFrame = Schema.Struct({
  key: Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: -(2 ** 53) + 1, maximum: 2 ** 53 - 1 }))
})
export const EncryptedFrame = Schema.Struct({
  encrypted_message: Schema.String,
  id: Schema.optionalKey(MessageId),
  from: Schema.optionalKey(Username)
})
export const AckFrame = Schema.Struct({ ack: MessageId })
export const HandshakeFrame = Schema.Struct({ proto: Schema.optionalKey(Schema.String), hs: Base64 })
export const CipherFrame = Schema.Struct({ ct: Base64 })
/**
 * Why a responder refuses a secure session, said once the handshake is complete and before
 * it closes: a code from this fixed set, nothing more. "key-changed": the initiator's
 * proven key is not the one the responder pinned for the name it claimed.
 */
export const RefusalCode = Schema.Literals(["key-changed"])
export type RefusalCode = typeof RefusalCode.Type
export const ErrorFrame = Schema.Struct({ error: RefusalCode })

export type PlainFrame = typeof PlainFrame.Type
export type KeyFrame = typeof KeyFrame.Type
export type EncryptedFrame = typeof EncryptedFrame.Type
export type AckFrame = typeof AckFrame.Type
export type HandshakeFrame = typeof HandshakeFrame.Type
export type CipherFrame = typeof CipherFrame.Type
export type ErrorFrame = typeof ErrorFrame.Type

export type Frame =
  | { readonly _tag: "Plain"; readonly frame: PlainFrame }
  | { readonly _tag: "Key"; readonly frame: KeyFrame }
  | { readonly _tag: "Encrypted"; readonly frame: EncryptedFrame }
  | { readonly _tag: "Ack"; readonly frame: AckFrame }
  | { readonly _tag: "Handshake"; readonly frame: HandshakeFrame }
  | { readonly _tag: "Cipher"; readonly frame: CipherFrame }
  | { readonly _tag: "Error"; readonly frame: ErrorFrame }

/** Secure session inner objects (after the Noise handshake). */
export const InnerMessage = Schema.Struct({
  type: Schema.Literal("msg"),
  id: MessageId,
  text: Schema.String,
  sentAt: Schema.String,
  /**
   * The conversation it was sent to beyond the receiver: `*all*` for a broadcast (protocol.md
   * 5.3). Any string decodes, so that a later value ("#group") does not end an older
   * receiver's session; a receiver acts only on the values it knows.
   */
  to: Schema.optionalKey(Schema.String),
  /**
   * A group message (`to` is `#` and the group id): the group's member list as its creator
   * signed it, the newest the sender holds (protocol.md 5.5). A receiver that does not know
   * groups ignores it, and shows the message as one-to-one.
   */
  group: Schema.optionalKey(GroupState),
  /** In a group message: the sender has left the group (its text says so to every member). */
  left: Schema.optionalKey(Schema.Literal(true)),
  /**
   * A file or folder offered (protocol.md 9.1): the receiver records it and may fetch it
   * over a file session. A receiver that does not know files shows the text alone.
   */
  file: Schema.optionalKey(FileOfferSchema)
})
/**
 * Why a receiver refused a message it acknowledges (protocol.md 5.3, 5.5): it has decided, and
 * sending the message again changes nothing, so it acks it, but it neither stored nor showed
 * it. p2pchat sends a code of ACK_REFUSALS; any short code of lower-case letters, digits and
 * `-` decodes, so that a code added later does not end an older initiator's session (which
 * shows a code it does not know as it is).
 */
export const ACK_REFUSALS = {
  "not-a-member": "you are not a member of the group in their list",
  "left": "they left the group",
  "not-in-group": "they are not a member of the group",
  "bad-list": "the group's member list you sent is not valid (not signed by its creator, or without its creator)",
  "other-group": "they hold another group, by another creator, under that id"
} as const
export type AckRefusal = keyof typeof ACK_REFUSALS
export const AckRefused = Schema.String.check(
  Schema.makeFilter((s: string) => /^[a-z0-9-]{1,32}$/.test(s) || "expected a refusal code of 1-32 characters a-z, 0-9 and -")
)
/** What a refusal code says to the sender's user: the known ones explained, another one as it is. */
export const refusalText = (code: string): string =>
  Object.hasOwn(ACK_REFUSALS, code) ? ACK_REFUSALS[code as AckRefusal] : code

export const InnerAck = Schema.Struct({
  type: Schema.Literal("ack"),
  id: MessageId,
  /** Only from a receiver that refused the message: why (a code, above). */
  refused: Schema.optionalKey(AckRefused)
})
export const Inner = Schema.Union([InnerMessage, InnerAck])
export type InnerMessage = typeof InnerMessage.Type
export type Inner = typeof Inner.Type

/** The payload of handshake messages 2 and 3: who the sender says it is. */
export const HandshakePayload = Schema.Struct({ username: Username })

const decoders: ReadonlyArray<readonly [string, Frame["_tag"], (u: unknown) => Result.Result<any, Schema.SchemaError>]> = [
  ["hs", "Handshake", Schema.decodeUnknownResult(HandshakeFrame)],
  ["ct", "Cipher", Schema.decodeUnknownResult(CipherFrame)],
  ["unencrypted_message", "Plain", Schema.decodeUnknownResult(PlainFrame)],
  ["encrypted_message", "Encrypted", Schema.decodeUnknownResult(EncryptedFrame)],
  ["key", "Key", Schema.decodeUnknownResult(KeyFrame)],
  ["ack", "Ack", Schema.decodeUnknownResult(AckFrame)],
  ["error", "Error", Schema.decodeUnknownResult(ErrorFrame)]
]


/** Parses JSON text (one frame from the splitter); the failure is a reason for the log. */
export const parseJsonObject = (text: string): Result.Result<object, string> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return Result.fail(`not JSON (${oneLine((e as Error).message)})`)
  }
  return typeof json === "object" && json !== null && !Array.isArray(json) ? Result.succeed(json) : Result.fail("not a JSON object")
}

/** Classifies a frame by its defining key and decodes it. */
export const decodeFrame = (text: string): Result.Result<Frame, string> => {
  const parsed = parseJsonObject(text)
  if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
  const json = parsed.success
  for (const [key, tag, decode] of decoders) {
    if (!Object.hasOwn(json, key)) continue
    const r = decode(json)
    return Result.isSuccess(r)
      ? Result.succeed({ _tag: tag, frame: r.success } as Frame)
      : Result.fail(`bad ${key} frame: ${oneLine(r.failure.message)}`)
  }
  return Result.fail(`unknown frame with keys ${oneLine(Object.keys(json).slice(0, 5).join(", "))}`)
}

const decodeInnerResult = Schema.decodeUnknownResult(Inner)
/** Decodes the plaintext of a secure frame. */
export const decodeInner = (text: string): Result.Result<Inner, string> => {
  const parsed = parseJsonObject(text)
  if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
  const r = decodeInnerResult(parsed.success)
  return Result.isSuccess(r) ? Result.succeed(r.success) : Result.fail(`bad inner object: ${oneLine(r.failure.message)}`)
}

/** Text of an `unencrypted_message`: base64 of UTF-8, or (some classic variants) the text itself. */
export const plainText = (value: string): string => {
  if (/^[A-Za-z0-9+/]*={0,2}$/.test(value) && value.length % 4 === 0 && value.length > 0) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(value, "base64"))
    } catch {
      // not UTF-8: the text itself
    }
  }
  return value
}

export const encodePlainText = (text: string): string => Buffer.from(text, "utf8").toString("base64")
