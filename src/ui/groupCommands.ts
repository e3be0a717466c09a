/**
 * The console's groups (cli.md "The console"): `group list|show|create|add|remove|leave`,
 * with the service calls of `p2pchat group` (Groups, then Initiator.groupChanged to tell the
 * members) and its formatting (groupView.ts); `history #NAME`; and how a message to a group
 * went (`msg #NAME TEXT`, a line in `chat #NAME`).
 */
import * as Effect from "effect/Effect"
import type { Changed, GroupError } from "../chat/Groups.ts"
import type { GroupSendResult } from "../chat/GroupSend.ts"
import { groupConversation } from "../domain/Conversation.ts"
import { type Ctx, knowGroup } from "./context.ts"
import { groupSummary, groupView, showLines, summaryLine } from "./groupView.ts"
import type { Word } from "./parse.ts"
import { conversationLine, recipientLine } from "./render.ts"
import { tone } from "./style.ts"

export const GROUP_USAGE = "group [list | show NAME | create NAME [USER...] | add NAME USER... | remove NAME USER... | leave NAME]"

/**
 * The copies not delivered now (each delivery is its event's). A message's pending copy is a
 * failure, as `send '#NAME'` says (exit 1 for a script); a change's is not (`group add` exits 0).
 */
export const reportCopies = (ctx: Ctx, r: GroupSendResult, kind: "message" | "change"): void => {
  if (ctx.out.json) ctx.out.result([], { event: "group", ...r })
  for (const c of r.recipients.filter((c) => c.state !== "delivered")) {
    const line = recipientLine(c)
    if (kind === "message" || c.state === "failed") ctx.out.fail(line)
    else if (!ctx.out.json) ctx.out.text([tone("dim", `  ${line}`)])
  }
}

/** A change made here: said at once; its notice goes to the members in the background. */
const change = (ctx: Ctx, made: Effect.Effect<Changed, GroupError>, what: string) =>
  Effect.gen(function*() {
    const c = yield* made
    const g = c.group.state
    knowGroup(ctx.state, g)
    ctx.out.result([`${what} #${g.name} (version ${g.version}): ${c.notice}`], { event: "group-changed", group: groupView(c.group) })
    yield* ctx.sends.track(ctx.initiator.groupChanged(c).pipe(
      Effect.match({
        onFailure: (e) => ctx.out.fail(`the members were not told: ${e.message}`),
        onSuccess: (r) => reportCopies(ctx, r, "change")
      })
    ))
  })

/** `group` alone, `group list`: the groups, remembered for completion. */
const list = (ctx: Ctx) =>
  Effect.gen(function*() {
    const found = yield* ctx.groups.list
    for (const g of found) knowGroup(ctx.state, g.state)
    ctx.out.result(found.length === 0 ? ["no groups; `group create NAME USER...` makes one"] : found.map(summaryLine), found.map(groupSummary))
  })

/** `group SUBCOMMAND ...`: as `p2pchat group`, its errors said as failures. */
export const groupCommand = (ctx: Ctx, args: ReadonlyArray<Word>): Effect.Effect<void> => {
  const sub = args[0]?.text.toLowerCase() ?? "list"
  const name = args[1]?.text
  const users = args.slice(2).map((w) => w.text)
  const usage = (text: string) => Effect.sync(() => ctx.out.usage(text))
  const run = (() => {
    switch (sub) {
      case "list":
        return list(ctx)
      case "show":
        return name === undefined ? usage("group show NAME") : Effect.map(ctx.groups.resolve(name), (g) => {
          knowGroup(ctx.state, g.state)
          ctx.out.result(showLines(g), groupView(g))
        })
      case "create":
        return name === undefined ? usage("group create NAME [USER...]") : change(ctx, ctx.groups.create(name, users), "made")
      case "add":
      case "remove":
        return name === undefined || users.length === 0
          ? usage(`group ${sub} NAME USER...`)
          : change(ctx, ctx.groups.change(name, sub === "add" ? users : [], sub === "add" ? [] : users), "changed")
      case "leave":
        return name === undefined ? usage("group leave NAME") : change(ctx, ctx.groups.leave(name), "left")
      default:
        return usage(GROUP_USAGE)
    }
  })()
  return run.pipe(Effect.catch((e: GroupError) => Effect.sync(() => ctx.out.fail(e.message))))
}

/** `history #NAME`: the group's messages, each sent one once with its members' states. */
export const showGroupHistory = (ctx: Ctx, ref: string) =>
  Effect.gen(function*() {
    const g = yield* ctx.groups.resolve(ref)
    knowGroup(ctx.state, g.state)
    const rows = yield* ctx.history.inConversation(groupConversation(g.state.id))
    ctx.state.unread.delete(groupConversation(g.state.id))
    ctx.out.result(rows.length === 0 ? [`no messages in #${g.state.name} yet`] : rows.map((c) => conversationLine(c, g.state.name)), rows)
  }).pipe(Effect.catch((e) => Effect.sync(() => ctx.out.fail(e.message))))
