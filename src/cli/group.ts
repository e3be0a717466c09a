/**
 * `p2pchat group ...` (cli.md "group"): the groups of the data dir. `create`, `add`,
 * `remove` and `leave` change a group here and tell its members at once, one secure copy
 * each (the ones not reached keep their copy as pending, sent when they are heard); `list`
 * and `show` read. A group is named by its name (a local label: two groups may share one,
 * then its id is needed) or its id, with or without a leading `#`.
 */
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Effect from "effect/Effect"
import type { Changed, GroupError, Groups } from "../chat/Groups.ts"
import type { GroupSendResult } from "../chat/GroupSend.ts"
import { type NodeConfig, UsageError } from "../services/Config.ts"
import { groupSummary, groupView, showLines, summaryLine } from "../ui/groupView.ts"
import { recipientLine, toJson } from "../ui/render.ts"
import { base, fail, inCommand, modules, printLine, resolve, resolveNamed } from "./base.ts"

/** A GroupError as the command line says it: a usage error (exit 2) or a failure (exit 1). */
const said = (e: GroupError) => e.reason === "Usage" ? new UsageError({ message: e.message }) : { message: e.message }

/** Runs `run` with the data dir's groups and sending side (the peers its node saved). */
const withGroups = <A, E>(config: NodeConfig, run: Effect.Effect<A, E, any>) =>
  Effect.gen(function*() {
    const { clientRole } = yield* modules.roles
    return yield* run.pipe(Effect.scoped, Effect.provide(clientRole(config))) as Effect.Effect<A, E>
  })

/** A change made and told: what it prints; exit 0 once stored, whoever got its notice now. */
const change = (make: (groups: Groups["Service"]) => Effect.Effect<Changed, GroupError>, what: string) =>
  Effect.gen(function*() {
    const config = yield* resolveNamed(yield* base)
    const { Groups } = yield* modules.groups
    const { Initiator } = yield* modules.initiator
    const [changed, told] = yield* withGroups(config, Effect.gen(function*() {
      const c = yield* make(yield* Groups).pipe(Effect.mapError(said))
      return [c, yield* (yield* Initiator).groupChanged(c)] as const
    }))
    if (config.json) return yield* printLine(toJson({ group: groupView(changed.group), notice: told }))
    yield* printLine(`${what} #${changed.group.state.name} (version ${changed.group.state.version}): ${changed.notice}`)
    for (const r of told.recipients) yield* printLine(recipientLine(r))
  })

const name = Argument.String("name").pipe(Argument.withDescription("the group: its name or id (a leading # is allowed)"))
const users = (what: string) => Argument.String("user").pipe(Argument.withDescription(what), Argument.variadic())
const needUsers = (list: ReadonlyArray<string>) =>
  list.length === 0 ? Effect.fail(new UsageError({ message: "missing USER: give at least one" })) : Effect.void

const create = Command.make("create", { name, users: users("its members besides you (p2pchat peers with pinned keys)") }, (p) =>
  change((g) => g.create(p.name, p.users), "made").pipe(inCommand("group create"))).pipe(
  Command.withDescription("makes a group, with you as its creator, and tells its members")
)

const add = Command.make("add", { name, users: users("who to add") }, (p) =>
  Effect.andThen(needUsers(p.users), change((g) => g.change(p.name, p.users, []), "changed")).pipe(inCommand("group add"))).pipe(
  Command.withDescription("adds members (the creator only) and tells every member")
)

const remove = Command.make("remove", { name, users: users("who to remove") }, (p) =>
  Effect.andThen(needUsers(p.users), change((g) => g.change(p.name, [], p.users), "changed")).pipe(inCommand("group remove"))).pipe(
  Command.withDescription("removes members (the creator only); they are told, and get nothing later")
)

const leave = Command.make("leave", { name }, (p) => change((g) => g.leave(p.name), "left").pipe(inCommand("group leave"))).pipe(
  Command.withDescription("leaves a group: its members are told, and what comes for it later is refused")
)

/** `group list` and `group show`: read the groups (a data dir without a database has none). */
const read = (ref: string | undefined) =>
  Effect.gen(function*() {
    const config = yield* resolve(yield* base)
    const { Groups } = yield* modules.groups
    const found = yield* withGroups(config, Effect.gen(function*() {
      const groups = yield* Groups
      return ref === undefined ? yield* groups.list : [yield* groups.resolve(ref)]
    }).pipe(Effect.mapError(said)))
    if (ref !== undefined) {
      const g = found[0]!
      if (config.json) return yield* printLine(toJson(groupView(g)))
      for (const line of showLines(g)) yield* printLine(line)
      return
    }
    if (config.json) return yield* printLine(toJson(found.map(groupSummary)))
    if (found.length === 0) return yield* printLine("no groups; `p2pchat group create NAME USER...` makes one")
    for (const g of found) yield* printLine(summaryLine(g))
  })

const list = Command.make("list", {}, () => read(undefined).pipe(inCommand("group list"))).pipe(
  Command.withDescription("the groups you are in (or left)")
)
const show = Command.make("show", { name }, (p) => read(p.name).pipe(inCommand("group show"))).pipe(
  Command.withDescription("a group's members, with their fingerprints")
)

export const groupCommand = Command.make("group", {}, () => read(undefined).pipe(inCommand("group"))).pipe(
  Command.withDescription("groups: create, add, remove, leave, list, show; `send '#NAME' TEXT` writes to one"),
  Command.withSubcommands([create, add, remove, leave, list, show])
)

/**
 * What `send '#NAME'` prints, and its failure unless every member's copy was delivered: a
 * refused copy is not (its member's node acked it without storing it), and the failure says
 * who refused it and why.
 */
export const reportGroup = (config: NodeConfig, result: GroupSendResult) =>
  Effect.gen(function*() {
    if (config.json) yield* printLine(toJson(result))
    else for (const r of result.recipients) yield* printLine(recipientLine(r))
    const short = result.recipients.filter((r) => r.state !== "delivered").length
    if (short === 0) return
    const refused = result.recipients.filter((r) => r.state === "refused").map(recipientLine)
    const pending = short > refused.length ? "; the pending ones go again when heard" : ""
    return yield* fail(`not delivered to ${short} of ${result.recipients.length} member(s)` +
      (refused.length === 0 ? "" : `: ${refused.join("; ")}`) + pending)
  })
