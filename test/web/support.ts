/**
 * The web UI's tests and bench: two real nodes in-process on loopback (alice on 127.0.0.2,
 * bob on 127.0.0.3, real UDP presence aimed at each other, real TCP, real SQLite in temp
 * data dirs), each serving its web UI (src/web/Web.ts) on its own address; and Debian's
 * Chromium driven by playwright-core. Everything is released by `close`.
 */
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { Browser } from "playwright-core"
import { layer as webLayer, WebServer } from "../../src/web/Web.ts"
import { freeUdpPort, startNode, type TestNode } from "../support/node.ts"

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
export const CHROMIUM = process.env["P2PCHAT_CHROMIUM"] ?? "/usr/bin/chromium"

/** Whether the browser tests can run; in CI they must (.ci/run installs chromium). */
export const browserSkip = (): string | undefined => {
  if (fs.existsSync(CHROMIUM)) return undefined
  if (process.env["CI"] === "true") return undefined // the test fails, saying chromium is missing
  return `no ${CHROMIUM}: the browser tests are skipped (apt-get install -y chromium)`
}

export const launch = async (): Promise<Browser> => {
  const { chromium } = await import("playwright-core")
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"], headless: true })
}

/** The client bundle must be built (`npm run build` builds it; the tests build it when missing or older than web/). */
export const ensureBundle = async () => {
  const bundle = path.join(ROOT, "dist", "web", "app.js")
  const sources = fs.readdirSync(path.join(ROOT, "web")).map((f) => fs.statSync(path.join(ROOT, "web", f)).mtimeMs)
  if (fs.existsSync(bundle) && fs.statSync(bundle).mtimeMs >= Math.max(...sources)) return
  const { execFileSync } = await import("node:child_process")
  execFileSync("npm", ["run", "--silent", "build:web"], { cwd: ROOT, stdio: "inherit" })
}

export interface WebNode {
  readonly node: TestNode
  readonly web: WebServer["Service"]
  /** http://host:port */
  readonly origin: string
}

const TUNING = { ackTimeoutMs: 3000, connectTimeoutMs: 2000, classicPauseMs: 100 }

/** Alice and bob, each with a web UI, hearing each other's presence. */
export const startPair = async () => {
  const scope = await Effect.runPromise(Scope.make())
  const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.provide(scope)(effect))
  try {
    const [aliceUdp, bobUdp] = [await Effect.runPromise(freeUdpPort), await Effect.runPromise(freeUdpPort)]
    const spec = [
      { name: "alice", bind: "127.0.0.2", udpPort: aliceUdp, other: { host: "127.0.0.3", port: bobUdp } },
      { name: "bob", bind: "127.0.0.3", udpPort: bobUdp, other: { host: "127.0.0.2", port: aliceUdp } }
    ]
    const nodes: Array<WebNode> = []
    for (const s of spec) {
      const node = await run(startNode(s.name, {
        tuning: TUNING,
        config: { bind: s.bind, udpPort: s.udpPort, targets: [s.other], announceEveryMs: 1000, awayAfterMs: 20_000 }
      }))
      const ctx = await run(Layer.buildWithScope(webLayer({ port: 0, bind: s.bind }), scope).pipe(Effect.provide(node.context)))
      const web = Context.get(ctx, WebServer)
      nodes.push({ node, web, origin: `http://${web.host}:${web.port}` })
    }
    return { alice: nodes[0]!, bob: nodes[1]!, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
  } catch (e) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw e
  }
}

/** Polls `check` every 20 ms for at most `ms`. */
export const waitFor = async (what: string, check: () => boolean | Promise<boolean>, ms = 10_000) => {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
