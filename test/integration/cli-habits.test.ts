/**
 * The command line as people live in it (issue 13), through real CLI processes of the
 * built bundle on temp data dirs, loopback only (every node and every listening `send`
 * gets `--bind 127.0.0.1` and loopback targets, on free ports):
 *
 *   - options anywhere on the line, before or after the command;
 *   - a usage error is one line on stderr pointing at the help, exit 2, nothing on stdout;
 *     `help` and `help COMMAND` print the help;
 *   - SIGTERM exits 143 and SIGINT 130, after a clean shutdown (the peers see `left`);
 *   - the profile: the name remembered by the first `start`, `config get/set/unset` with
 *     the flags' rules, precedence flag > env > profile > default;
 *   - `send` without a node: it listens itself, within `--wait`; `--wait 0` to nobody
 *     fails at once; an empty message is a usage error;
 *   - `history --limit --since --grep`;
 *   - the read-only commands create nothing at a mistyped path, and read a read-only
 *     data dir (as another user, `nobody`, where the tests run as root: root ignores
 *     permission bits, so a chmod alone would prove nothing).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Layer } from "effect"
import { describe, expect, it } from "vitest"
import * as History from "../../src/services/History.ts"
import * as Store from "../../src/services/Store.ts"
import { parseSince } from "../../src/cli/read.ts"
import {
  BIN,
  type CliProcess,
  freePort,
  isPeer,
  LOOPBACK,
  nodeOptions,
  nodePair,
  type NodeSpec,
  parseJsonLine,
  runCli,
  type RunResult,
  spawnCli,
  tempDir,
  useBuiltCli,
  waitFor
} from "../support/cli.ts"

useBuiltCli({ cleanupAfterEach: true })

const optionsOf = (n: NodeSpec): Array<string> => [...nodeOptions(n), "--announce-every", "1s", "--away-after", "5s"]

const startNode = (n: NodeSpec, extra: ReadonlyArray<string> = []): CliProcess =>
  spawnCli(["start", ...optionsOf(n), "--json", ...extra], { stdin: "pipe" })

/** A usage error: exit 2, nothing on stdout, one line on stderr that points at the help. */
const expectUsage = (what: string, r: RunResult, hint = /; see `p2pchat (\S+ )*--help`$/) => {
  expect(r.code, `${what}: exit code\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(2)
  expect(r.stdout, `${what}: stdout`).toBe("")
  const lines = r.stderr.split("\n").filter((l) => l !== "")
  expect(lines, `${what}: stderr`).toHaveLength(1)
  expect(lines[0], what).toMatch(/^p2pchat: /)
  expect(lines[0], what).toMatch(hint)
}

/** A data dir that exists (made by `config set`, which writes the profile only). */
const madeDataDir = async (): Promise<string> => {
  const dir = path.join(tempDir("p2pchat-habits-"), "data")
  const r = await runCli(["config", "set", "tcp-port", "0", "--data-dir", dir])
  expect(r.code, r.stderr).toBe(0)
  return dir
}

describe("options go anywhere on the line", () => {
  it("before the command, after it, and between its arguments", async () => {
    const dir = await madeDataDir()
    const after = await runCli(["peers", "--json", "--data-dir", dir])
    const before = await runCli(["--data-dir", dir, "--json", "peers"])
    const mixed = await runCli(["--json", "peers", "--data-dir", dir])
    for (const r of [after, before, mixed]) {
      expect(r.code, r.stderr).toBe(0)
      expect(JSON.parse(r.stdout)).toEqual([])
    }
    const set = await runCli(["--data-dir", dir, "config", "set", "udp-port", "7000"])
    expect(set.code, set.stderr).toBe(0)
    const who = await runCli(["--data-dir", dir, "whoami", "--json"])
    expect(JSON.parse(who.stdout)).toMatchObject({ dataDir: dir, udpPort: 7000, tcpPort: 0 })
  })
})

describe("usage errors: one line on stderr with the help to read, exit 2, nothing on stdout", () => {
  it("unknown options and commands, missing and bad arguments and values", async () => {
    const dir = await madeDataDir()
    const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
      [["peers", "--bogus"], /unknown option --bogus; see `p2pchat peers --help`$/],
      [["--bogus", "peers"], /unknown option --bogus; see `p2pchat peers --help`$/],
      [["bogus"], /unknown command 'bogus'; see `p2pchat --help`$/],
      [["send"], /missing USER; see `p2pchat send --help`$/],
      [["send", "bob"], /see `p2pchat send --help`$/],
      [["send", "bob", "hi", "--secure", "--plain", "--name", "a"], /choose one of --secure, --plain, --classic; see `p2pchat send --help`$/],
      [["send", "bob", "hi", "--wait", "soon", "--name", "a"], /--wait: expected a duration/],
      [["--udp-port", "x", "peers"], /--udp-port: expected a port number .*; see `p2pchat peers --help`$/],
      [["history", "--limit", "0"], /--limit: expected a whole number/],
      [["history", "--since", "yesterday"], /--since: expected a time ago/],
      [["config", "set", "udp-port", "99999"], /udp-port: expected a port number .*; see `p2pchat config set --help`$/],
      [["config", "set", "nosuchkey", "1"], /unknown key 'nosuchkey'/],
      [["config", "get", "nosuchkey"], /unknown key 'nosuchkey'; .*; see `p2pchat config get --help`$/],
      [["help", "nope"], /unknown command 'nope'; see `p2pchat --help`$/]
    ]
    for (const [args, message] of cases) {
      const r = await runCli([...args, "--data-dir", dir])
      expectUsage(args.join(" "), r, message)
    }
  }, 60_000)

  it("an empty or blank message is refused", async () => {
    const dir = await madeDataDir()
    for (const text of ["", "   ", "\t"]) {
      const r = await runCli(["send", "bob", text, "--name", "alice", "--data-dir", dir, "--wait", "0"])
      expectUsage(`send bob ${JSON.stringify(text)}`, r, /the message is empty/)
    }
    // nothing was stored
    expect(fs.existsSync(path.join(dir, "p2pchat.db"))).toBe(false)
  })

  it("`help` and `help COMMAND` print the help on stdout, exit 0", async () => {
    const all = await runCli(["help"])
    expect(all.code, all.stderr).toBe(0)
    expect(all.stderr).toBe("")
    for (const command of ["start", "send", "history", "config", "help"]) expect(all.stdout).toContain(command)
    const send = await runCli(["help", "send"])
    expect(send.code, send.stderr).toBe(0)
    // USER is absent with --all, so both are shown as optional; the command checks them
    expect(send.stdout).toContain("p2pchat send [flags] [<user>] [<text...>]")
    expect(send.stdout).toContain("--wait")
    expect(send.stdout).toContain("--all")
    expect(send.stdout).toEqual((await runCli(["send", "--help"])).stdout)
    const set = await runCli(["help", "config", "set"])
    expect(set.stdout).toContain("p2pchat config set [flags] <key> <value>")
  })
})

describe("signals: a clean shutdown, then 143 for SIGTERM and 130 for SIGINT", () => {
  it("SIGTERM: bye sent (the peer sees `left`), exit 143; SIGINT: exit 130", async () => {
    const { alice, bob } = await nodePair("p2pchat-habits-sig-")
    const a = startNode(alice)
    const b = startNode(bob)
    await Promise.all([a.waitForJson(isPeer("bob", "online"), 8_000), b.waitForJson(isPeer("alice", "online"), 8_000)])
    const byTerm = b.stop("SIGTERM")
    await a.waitForJson(isPeer("bob", "left"), 3_000)
    expect(await byTerm, b.stderr.join("\n")).toEqual({ code: 143, signal: null })

    const seen = (status: string, from: number, timeoutMs: number) =>
      a.waitForLine((l) => isPeer("bob", status)(parseJsonLine(l) ?? {}), { from, timeoutMs })
    const b2 = startNode(bob)
    const back = await seen("online", a.stdout.length, 8_000)
    const byInt = b2.stop("SIGINT")
    await seen("left", back.index + 1, 3_000)
    expect(await byInt, b2.stderr.join("\n")).toEqual({ code: 130, signal: null })
  }, 40_000)
})

describe("the profile", () => {
  it("the first `start --name` remembers the name: every command knows it without --name", async () => {
    const [udp, tcp] = [await freePort(), await freePort()]
    const dir = path.join(tempDir("p2pchat-habits-profile-"), "data")
    const where = ["--data-dir", dir, "--bind", LOOPBACK, "--udp-port", String(udp), "--tcp-port", String(tcp)]
    const first = spawnCli(["start", "--name", "alice", ...where, "--json"], { stdin: "pipe" })
    await first.waitForLine((l) => l.includes("listening on TCP"), { stream: "stderr", timeoutMs: 10_000 })
    await first.stop()
    expect((fs.statSync(path.join(dir, "config.json")).mode & 0o777).toString(8)).toBe("600")

    const who = await runCli(["whoami", "--json", "--data-dir", dir])
    expect(who.code, who.stderr).toBe(0)
    expect(JSON.parse(who.stdout)).toMatchObject({ username: "alice", dataDir: dir })
    expect(JSON.parse(who.stdout).fingerprint).toMatch(/^\d{5}( \d{5}){11}$/)

    // stdin is not a terminal: without the profile this would be "no username" (exit 2)
    const again = spawnCli(["start", ...where, "--json"], { stdin: "pipe" })
    await again.waitForLine((l) => l.includes("listening on TCP"), { stream: "stderr", timeoutMs: 10_000 })
    await again.stop()

    // --name and P2PCHAT_NAME override it for one run, and change nothing
    const flag = await runCli(["whoami", "--json", "--name", "carol", "--data-dir", dir], { env: { P2PCHAT_NAME: "dave" } })
    expect(JSON.parse(flag.stdout).username).toBe("carol")
    const env = await runCli(["whoami", "--json", "--data-dir", dir], { env: { P2PCHAT_NAME: "dave" } })
    expect(JSON.parse(env.stdout).username).toBe("dave")
    const stored = await runCli(["config", "get", "name", "--data-dir", dir])
    expect(stored.stdout).toBe("alice")
  }, 40_000)

  it("a name typed at the question (on a terminal) is remembered", async () => {
    const [udp, tcp] = [await freePort(), await freePort()]
    const dir = path.join(tempDir("p2pchat-habits-typed-"), "data")
    const where = ["--data-dir", dir, "--bind", LOOPBACK, "--udp-port", String(udp), "--tcp-port", String(tcp)]
    const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`
    const line = [process.execPath, BIN, "start", ...where].map(quote).join(" ")
    // `script` gives the node a terminal: it asks, as the original did
    const tty = spawnCli([line, "/dev/null"], { command: ["script", "-qfe", "-c"], stdin: "pipe" })
    let shown = ""
    tty.child.stdout!.on("data", (chunk: string) => void (shown += chunk))
    await waitFor("the question", () => (shown.includes("Enter your username:") ? true : undefined), 10_000)
    tty.child.stdin!.write("carol\r")
    await waitFor("the name stored", () => (fs.existsSync(path.join(dir, "config.json")) ? true : undefined), 10_000)
    await tty.stop()
    const stored = await runCli(["config", "get", "name", "--data-dir", dir])
    expect(stored.stdout, stored.stderr).toBe("carol")
  }, 30_000)

  it("config set, get, unset; precedence flag > env > profile > default", async () => {
    const dir = path.join(tempDir("p2pchat-habits-config-"), "data")
    const config = (...args: Array<string>) => runCli(["config", ...args, "--data-dir", dir])
    expect((await config("set", "udp-port", "7000")).code).toBe(0)
    expect((await config("set", "targets", "10.0.0.5:6000, peer.lan")).code).toBe(0)
    expect((await config("set", "name", "Zoë")).code).toBe(0)
    expect((await config("set", "downloads", dir)).code).toBe(0)
    const all = await config("get", "--json")
    expect(JSON.parse(all.stdout)).toEqual({ name: "Zoë", "udp-port": 7000, targets: ["10.0.0.5:6000", "peer.lan"], downloads: dir })
    expect((await config("get")).stdout.split("\n")).toEqual([
      "name = Zoë",
      "udp-port = 7000",
      "targets = 10.0.0.5:6000,peer.lan",
      `downloads = ${dir}`
    ])
    expect((await config("get", "udp-port", "--json")).stdout).toBe("7000")

    const udpOf = async (args: Array<string>, env: Record<string, string> = {}) =>
      JSON.parse((await runCli(["whoami", "--json", "--data-dir", dir, ...args], { env })).stdout).udpPort
    expect(await udpOf([])).toBe(7000)
    expect(await udpOf([], { P2PCHAT_UDP_PORT: "7001" })).toBe(7001)
    expect(await udpOf(["--udp-port", "7002"], { P2PCHAT_UDP_PORT: "7001" })).toBe(7002)

    expect((await config("unset", "udp-port")).code).toBe(0)
    expect(await udpOf([])).toBe(6000)
    const gone = await config("get", "udp-port")
    expect(gone.code).toBe(1)
    expect(gone.stderr).toMatch(/udp-port is not set/)

    // a bad value is refused as the flag refuses it, and the profile is unchanged
    const before = fs.readFileSync(path.join(dir, "config.json"), "utf8")
    for (const [key, value] of [["udp-port", "65536"], ["bind", "999.1.1.1"], ["targets", "a b"], ["name", " x"], ["name", "a\u200bb"]]) {
      expectUsage(`config set ${key} ${value}`, await config("set", key!, value!), /see `p2pchat config set --help`$/)
    }
    expect(fs.readFileSync(path.join(dir, "config.json"), "utf8")).toBe(before)
  }, 40_000)
})

describe("send, with or without a node running on the data dir", () => {
  it("listens for the peer itself: bob, started after it, is heard and gets the message", async () => {
    const { alice, bob } = await nodePair("p2pchat-habits-send-")
    const sending = spawnCli(["send", "bob", "hello", "from", "afar", ...nodeOptions(alice), "--wait", "10s"])
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(sending.running(), sending.stderr.join("\n")).toBe(true)
    const b = startNode(bob)
    const got = await b.waitForJson((e) => e.event === "message" && e.from === "alice", 10_000)
    expect(got.value.text).toBe("hello from afar")
    expect(await sending.exited).toEqual({ code: 0, signal: null })
    expect(sending.stdout).toEqual(["delivered to bob"])
  }, 30_000)

  it("beside a node on its data dir: waits for that node to hear the peer, and binds no port of its own", async () => {
    const { alice, bob } = await nodePair("p2pchat-habits-beside-")
    const a = startNode(alice)
    await a.waitForLine((l) => l.includes("listening on TCP"), { stream: "stderr", timeoutMs: 10_000 })
    const sending = spawnCli(["send", "bob", "through", "the", "node", ...nodeOptions(alice), "--wait", "10s"])
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(sending.running(), sending.stderr.join("\n")).toBe(true)
    const b = startNode(bob)
    const got = await b.waitForJson((e) => e.event === "message" && e.from === "alice", 10_000)
    expect(got.value.text).toBe("through the node")
    expect(await sending.exited).toEqual({ code: 0, signal: null })
    // it never tried alice's presence port, which her node holds
    expect(sending.stderr).toEqual([])
  }, 30_000)

  it("--wait 0 to a user nobody knows: exit 1 at once, saying who lists the peers", async () => {
    const { alice } = await nodePair("p2pchat-habits-nobody-")
    const startedAt = Date.now()
    const r = await runCli(["send", "carol", "hi", ...nodeOptions(alice), "--wait", "0"])
    expect(Date.now() - startedAt).toBeLessThan(3_000)
    expect(r.code, r.stderr).toBe(1)
    expect(r.stdout).toBe("")
    expect(r.stderr).toBe("p2pchat: no user 'carol' is online; `p2pchat peers` lists who is")
  })

  it("--bind to an address not on this host: a clear message, exit 1", async () => {
    const dir = tempDir("p2pchat-habits-bind-")
    for (const command of [["start"], ["discover"], ["send", "bob", "hi"]]) {
      const r = await runCli([...command, "--name", "a", "--data-dir", dir, "--bind", "10.9.9.9", "--udp-port", "0", "--tcp-port", "0"])
      expect(r.code, r.stderr).toBe(1)
      const lines = r.stderr.split("\n").filter((l) => l !== "")
      expect(lines, command[0]).toHaveLength(1)
      // no empty cause "()": the address, and why
      expect(lines[0]).toMatch(/^p2pchat: cannot bind (UDP )?10\.9\.9\.9\b.*not (an address )?on this host.*--bind$/)
    }
  })
})

/** Writes a history: `texts` received from bob, `at` minutes ago each. */
const seed = (dir: string, rows: ReadonlyArray<readonly [string, number]>) =>
  Effect.runPromise(Effect.gen(function*() {
    const history = yield* History.History
    let i = 0
    for (const [text, minutesAgo] of rows) {
      const id = `00000000-0000-4000-8000-${String(i++).padStart(12, "0")}`
      yield* history.recordReceived({ id, peer: "bob", text, at: new Date(Date.now() - minutesAgo * 60_000), mode: "plain" })
    }
  }).pipe(Effect.provide(History.layer.pipe(Layer.provide(Store.layer(dir))))))

describe("history --limit, --since, --grep", () => {
  it("--since TIME: a time ago, or an ISO 8601 date or time (local without an offset); nothing else", () => {
    const now = Date.UTC(2026, 11, 1, 12, 0, 0)
    expect(parseSince("30m", now)).toBe(now - 30 * 60_000)
    expect(parseSince("1.5h", now)).toBe(now - 90 * 60_000)
    expect(parseSince("2d", now)).toBe(now - 2 * 86_400_000)
    expect(parseSince("1w", now)).toBe(now - 7 * 86_400_000)
    expect(parseSince("2026-12-01", now)).toBe(new Date(2026, 11, 1).getTime())
    expect(parseSince("2026-12-01 13:05", now)).toBe(new Date(2026, 11, 1, 13, 5).getTime())
    expect(parseSince("2026-12-01T13:05:07", now)).toBe(new Date(2026, 11, 1, 13, 5, 7).getTime())
    expect(parseSince("2026-12-01T13:05Z", now)).toBe(Date.UTC(2026, 11, 1, 13, 5))
    expect(parseSince("2026-12-01T13:05+01:00", now)).toBe(Date.UTC(2026, 11, 1, 12, 5))
    expect(parseSince("2026-12-01Z", now)).toBe(Date.UTC(2026, 11, 1))
    for (const bad of ["", "yesterday", "2h ago", "-1h", "2026-02-30", "2026-12-01T25:00", "2026-13-01", "12:00", "5"]) {
      expect(parseSince(bad, now), bad).toBeUndefined()
    }
  })

  it("filters, and combines the filters", async () => {
    const dir = tempDir("p2pchat-habits-history-")
    await seed(dir, [["Old news", 180], ["hello there", 90], ["HELLO again", 20], ["bye", 5]])
    const texts = async (...args: Array<string>) => {
      const r = await runCli(["history", "--json", "--data-dir", dir, ...args])
      expect(r.code, r.stderr).toBe(0)
      return (JSON.parse(r.stdout) as Array<{ text: string }>).map((h) => h.text)
    }
    expect(await texts()).toEqual(["Old news", "hello there", "HELLO again", "bye"])
    expect(await texts("--limit", "2")).toEqual(["HELLO again", "bye"])
    expect(await texts("--since", "1h")).toEqual(["HELLO again", "bye"])
    expect(await texts("--since", "2h")).toEqual(["hello there", "HELLO again", "bye"])
    expect(await texts("--since", new Date(Date.now() - 30 * 60_000).toISOString())).toEqual(["HELLO again", "bye"])
    expect(await texts("--grep", "hello")).toEqual(["hello there", "HELLO again"])
    expect(await texts("bob", "--grep", "HeLLo", "--since", "1h")).toEqual(["HELLO again"])
    expect(await texts("--grep", "hello", "--limit", "1")).toEqual(["HELLO again"])
    expect(await texts("--grep", "nothing like it")).toEqual([])
    expect(await texts("carol")).toEqual([])
  })
})

const READ_ONLY = [["peers"], ["whoami"], ["history"], ["stats"], ["config", "get"]] as const

describe("read-only commands never create anything", () => {
  it("at a mistyped data dir path: exit 1, that path not made", async () => {
    const parent = tempDir("p2pchat-habits-missing-")
    const dir = path.join(parent, "no", "such", "dir")
    for (const command of READ_ONLY) {
      for (const json of [[], ["--json"]]) {
        const r = await runCli([...command, ...json, "--data-dir", dir, "--name", "x"])
        expect(r.code, `${command.join(" ")}: ${r.stderr}`).toBe(1)
        expect(r.stdout).toBe("")
        expect(r.stderr).toBe(`p2pchat: no p2pchat data dir at ${dir} (start a node there first, or check --data-dir)`)
      }
    }
    expect(fs.readdirSync(parent)).toEqual([])
  }, 30_000)
})

/** Every file of a directory with its mode, size and mtime, and the directory's own. */
const snapshot = (dir: string) =>
  [".", ...fs.readdirSync(dir).sort()].map((f) => {
    const s = fs.statSync(path.join(dir, f))
    return `${f} ${(s.mode & 0o777).toString(8)} ${s.size} ${s.mtimeMs}`
  })

const isRoot = process.getuid?.() === 0
const NOBODY = 65534
/** Root, setpriv, and a program nobody may read and run (CI's clones live in a private temp dir). */
const canDropToNobody = isRoot && spawnSync("setpriv", ["--version"]).status === 0 &&
  spawnSync("setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, BIN, "--version"]).status === 0

/** A data dir as a stopped node leaves it: history, identity, profile; then made read-only (555, files 444). */
const readOnlyDataDir = async (owner?: number) => {
  const dir = path.join(tempDir("p2pchat-habits-ro-"), "data")
  const made = await runCli(["config", "set", "name", "alice", "--data-dir", dir])
  expect(made.code, made.stderr).toBe(0)
  await seed(dir, [["first", 30], ["second", 10]])
  const { loadOrCreateIdentity } = await import("../../src/services/Crypto.ts")
  await Effect.runPromise(loadOrCreateIdentity(dir))
  for (const f of fs.readdirSync(dir)) {
    if (owner !== undefined) fs.chownSync(path.join(dir, f), owner, owner)
    fs.chmodSync(path.join(dir, f), 0o444)
  }
  if (owner !== undefined) {
    fs.chownSync(dir, owner, owner)
    fs.chmodSync(path.dirname(dir), 0o755)
  }
  fs.chmodSync(dir, 0o555)
  return dir
}

const checkReadOnlyCommands = async (dir: string, command?: ReadonlyArray<string>) => {
  const before = snapshot(dir)
  const bytes = fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f)))
  const run = (args: Array<string>) => runCli([...args, "--data-dir", dir], command === undefined ? {} : { command })
  const history = await run(["history", "--json"])
  expect(history.code, history.stderr).toBe(0)
  expect((JSON.parse(history.stdout) as Array<{ text: string }>).map((h) => h.text)).toEqual(["first", "second"])
  const who = await run(["whoami", "--json"])
  expect(who.code, who.stderr).toBe(0)
  expect(JSON.parse(who.stdout)).toMatchObject({ username: "alice" })
  expect(JSON.parse(who.stdout).fingerprint).not.toBeNull()
  const peers = await run(["peers", "--json"])
  expect(peers.code, peers.stderr).toBe(0)
  expect(JSON.parse(peers.stdout)).toEqual([])
  const stats = await run(["stats"])
  expect(stats.code).toBe(1)
  expect(stats.stderr).toMatch(/no stats/)
  expect((await run(["config", "get", "name"])).stdout).toBe("alice")
  expect(snapshot(dir), "the data dir changed").toEqual(before)
  fs.readdirSync(dir).forEach((f, i) => expect(fs.readFileSync(path.join(dir, f)).equals(bytes[i]!), `${f} changed`).toBe(true))
}

describe("read-only commands on a read-only data dir (chmod 555, files 444)", () => {
  it("as this user: they work, and nothing in the data dir changes (no file made, written or touched)", async () => {
    const dir = await readOnlyDataDir()
    try {
      await checkReadOnlyCommands(dir)
    } finally {
      fs.chmodSync(dir, 0o700)
    }
  }, 30_000)

  it.skipIf(!canDropToNobody)("as a user the permissions bind (nobody, its own data dir): they work all the same", async () => {
    const dir = await readOnlyDataDir(NOBODY)
    const asNobody = ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, BIN]
    try {
      // the permissions bind: nobody cannot write there
      const probe = spawnSync(asNobody[0]!, [...asNobody.slice(1, 4), "touch", path.join(dir, "probe")])
      expect(probe.status).not.toBe(0)
      await checkReadOnlyCommands(dir, asNobody)
    } finally {
      fs.chmodSync(dir, 0o700)
    }
  }, 30_000)
})
