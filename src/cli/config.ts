/**
 * `p2pchat config`: the profile in the data dir (Profile.ts; cli.md "The data dir").
 * `config get [KEY]` reads it (read-only: it creates nothing), `config set KEY VALUE`
 * checks VALUE by the rules of the flag of that name (a bad one is a usage error) and
 * writes it, `config unset KEY` removes it.
 */
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Profile from "../services/Profile.ts"
import { toJson } from "../ui/render.ts"
import { base, dataDirOf, fail, inCommand, modules, printLine } from "./base.ts"

const shown = (v: unknown): string => Array.isArray(v) ? v.join(",") : String(v)

/** The known keys that are set, in the order of KEYS. */
const setKeys = (p: Record<string, unknown>) => Profile.KEYS.filter((k) => p[k] !== undefined && p[k] !== null)

const show = (key: string | undefined) =>
  Effect.gen(function*() {
    const shared = yield* base
    const dataDir = dataDirOf(shared)
    const k = key === undefined ? undefined : yield* Profile.checkKey(key)
    const { requireDataDir } = yield* modules.read
    yield* requireDataDir(dataDir)
    const profile: Record<string, unknown> = yield* Profile.read(dataDir)
    if (k !== undefined) {
      const value = profile[k]
      if (value === undefined || value === null) return yield* fail(`${k} is not set in ${Profile.profileFile(dataDir)}`)
      return yield* printLine(shared.json ? toJson(value) : shown(value))
    }
    const keys = setKeys(profile)
    if (shared.json) return yield* printLine(toJson(Object.fromEntries(keys.map((k) => [k, profile[k]]))))
    if (keys.length === 0) return yield* printLine(`nothing set (${Profile.profileFile(dataDir)})`)
    for (const k of keys) yield* printLine(`${k} = ${shown(profile[k])}`)
  })

const get = Command.make("get", {
  key: Argument.String("key").pipe(Argument.withDescription(`one of ${Profile.KEYS.join(", ")} (all when omitted)`), Argument.optional)
}, (p) => show(Option.getOrUndefined(p.key)).pipe(inCommand("config get"))).pipe(
  Command.withDescription("what your profile sets: one key, or all")
)

const set = Command.make("set", {
  key: Argument.String("key").pipe(Argument.withDescription(Profile.KEYS.join(", "))),
  value: Argument.String("value").pipe(Argument.withDescription("checked as the option of that name (targets: a comma list)"))
}, (p) =>
  Effect.gen(function*() {
    const key = yield* Profile.checkKey(p.key)
    const value = yield* Profile.parseValue(key, p.value)
    yield* Profile.update(dataDirOf(yield* base), (stored) => ({ ...stored, [key]: value }))
  }).pipe(inCommand("config set"))).pipe(Command.withDescription("sets a default of yours in the profile"))

const unset = Command.make("unset", {
  key: Argument.String("key").pipe(Argument.withDescription(Profile.KEYS.join(", ")))
}, (p) =>
  Effect.gen(function*() {
    const key = yield* Profile.checkKey(p.key)
    const dataDir = dataDirOf(yield* base)
    const stored = yield* Profile.read(dataDir)
    // nothing stored: nothing to change, and nothing made
    if (stored[key] === undefined) return
    yield* Profile.update(dataDir, (current) => {
      const { [key]: _, ...rest } = current
      return rest
    })
  }).pipe(inCommand("config unset"))).pipe(Command.withDescription("removes a default of yours from the profile"))

export const configCommand = Command.make("config", {}, () => show(undefined).pipe(inCommand("config"))).pipe(
  Command.withDescription("your profile: the name and defaults kept in the data dir (get, set, unset)"),
  Command.withSubcommands([get, set, unset])
)
