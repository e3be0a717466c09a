/**
 * How a message crosses the wire: the one set of names used by the initiator, the history,
 * the CLI and the console. The user's words (`--secure`, `--plain`, `--classic`, and the
 * console's "secure"/"unsecure") map onto these in `modeOfWord`.
 */
import * as Schema from "effect/Schema"

export const Mode = Schema.Literals(["noise", "plain", "classic-3des"])
export type Mode = typeof Mode.Type

/** The word a user types or reads for each mode. */
export const MODE_WORD: Record<Mode, "secure" | "plain" | "classic"> = {
  noise: "secure",
  plain: "plain",
  "classic-3des": "classic"
}

export const modeOfWord = (word: "secure" | "plain" | "classic"): Mode =>
  word === "secure" ? "noise" : word === "plain" ? "plain" : "classic-3des"
