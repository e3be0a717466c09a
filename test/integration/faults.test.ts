/**
 * Faults (issue 6, item 4), through the built CLI: each fault gives a clear message that
 * says what to do, exit code 1, and no damage to what is already stored.
 *
 *   - a database file that is not SQLite (random bytes), a damaged p2pchat database, and
 *     a foreign SQLite database (also one with an uncheckpointed WAL beside it): refused,
 *     the files byte-for-byte unchanged;
 *   - the TCP port already in use (by a plain server, and by another node): the message
 *     names the port and `--tcp-port`;
 *   - a data dir that cannot be a directory (a path under a regular file, or a regular
 *     file itself; the tests run as root, so chmod cannot make a directory unwritable);
 *   - two processes on one data dir: `send` and `history` while `start` runs on it (and
 *     writes: messages keep arriving) work, through SQLite's busy timeout;
 *   - a peer that comes back on another address (127.0.0.2) with the same name and key:
 *     pending and new messages go to the new address, none to the old one;
 *   - the disk filling up under a running node, receiver or sender (a 2 MiB tmpfs mounted
 *     as the data dir in a private mount namespace: needs root and unshare, skipped
 *     otherwise): the user is told, no message is acked that was not stored, nothing is
 *     lost or damaged, and what waited is delivered once space is back.
 *
 * Loopback only: every node gets `--bind 127.0.0.x` and loopback targets, on free ports.
 * Every wait is bounded; every process is killed in afterEach (cleanup()).
 */
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import {
  BIN,
  type CliProcess,
  freePort,
  isPeer,
  LOOPBACK,
  nodeOptions,
  nodePair,
  type NodeSpec,
  runCli,
  type RunResult,
  sleep,
  spawnCli,
  tempDir,
  useBuiltCli,
  waitFor
} from "../support/cli.ts"
import { openInChild, openRaw } from "../support/sql.ts"

const OTHER_LOOPBACK = "127.0.0.2"
const DB = "p2pchat.db"

/** The options every command of `n` gets: the node's own, and its timers. */
const optionsOf = (n: NodeSpec): Array<string> => [...nodeOptions(n), "--announce-every", "500ms", "--away-after", "2s"]

const startNode = (n: NodeSpec): CliProcess => spawnCli(["start", ...optionsOf(n), "--json"], { stdin: "pipe" })

const pair = () => nodePair("p2pchat-faults-")

/** A node spec on a data dir of the test's choosing, with free ports; it needs no peer. */
const loneNode = async (dataDir: string): Promise<NodeSpec> => {
  const [udp, tcp, other] = [await freePort(), await freePort(), await freePort()]
  return { name: "alice", dataDir, bind: LOOPBACK, udpPort: udp, tcpPort: tcp, targets: [`${LOOPBACK}:${other}`] }
}

/**
 * The commands that open the database, each run on `spec`: `start` (the whole node),
 * `history` and `send` (a second process beside a node).
 */
const dbCommands = (spec: NodeSpec): ReadonlyArray<readonly [string, ReadonlyArray<string>]> => [
  ["start", ["start", ...optionsOf(spec)]],
  ["history", ["history", ...optionsOf(spec)]],
  ["history --json", ["history", "--json", ...optionsOf(spec)]],
  ["send", ["send", "bob", "hello", ...optionsOf(spec)]]
]

/** A refusal: exit 1 (not killed by the timeout), one clean message on stderr, no stack trace. */
const expectRefused = (what: string, r: RunResult) => {
  expect(r.signal, `${what} did not exit by itself (killed after the timeout)\n${r.stderr}`).toBeNull()
  expect(r.code, `${what}: exit code\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(1)
  expect(r.stderr, `${what}: a stack trace instead of a message`).not.toMatch(/\n\s+at /)
  expect(r.stderr, `${what}: no message`).toMatch(/^p2pchat: /)
}

/** Every file of a directory with its bytes. */
const snapshotDir = (dir: string) =>
  new Map(fs.readdirSync(dir).filter((f) => f.startsWith(DB)).map((f) => [f, fs.readFileSync(path.join(dir, f))] as const))

const expectUnchanged = (what: string, dir: string, before: ReadonlyMap<string, Buffer>) => {
  const after = snapshotDir(dir)
  expect([...after.keys()].sort(), `${what}: database files appeared or vanished in ${dir}`).toEqual([...before.keys()].sort())
  for (const [file, bytes] of before) {
    expect(after.get(file)?.equals(bytes), `${what}: ${file} changed (${bytes.length} -> ${after.get(file)?.length} bytes)`).toBe(true)
  }
}

/** A TCP server on host:port that only counts the connections it gets. */
const sentinel = (host: string, port: number) =>
  new Promise<{ readonly connections: () => number; readonly close: () => Promise<void> }>((resolve, reject) => {
    let count = 0
    const sockets = new Set<net.Socket>()
    const server = net.createServer((s) => {
      count++
      sockets.add(s)
      s.on("close", () => sockets.delete(s))
      s.on("error", () => {})
    })
    server.once("error", reject)
    server.listen(port, host, () =>
      resolve({
        connections: () => count,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy()
            server.close(() => done())
          })
      }))
  })

const servers: Array<{ readonly close: () => Promise<void> }> = []

useBuiltCli({ cleanupAfterEach: true })

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

// ---------------------------------------------------------------------------------------------

describe("a database p2pchat must not use: refused with what to do, never touched", () => {
  const refusesAll = async (dir: string, reason: RegExp) => {
    const before = snapshotDir(dir)
    expect(before.size).toBeGreaterThan(0)
    const spec = await loneNode(dir)
    for (const [what, args] of dbCommands(spec)) {
      const r = await runCli(args, { timeoutMs: 15_000 })
      expectRefused(what, r)
      expect(r.stderr, `${what}: the message does not name the file`).toContain(path.join(dir, DB))
      expect(r.stderr, `${what}: the message does not say what is wrong`).toMatch(reason)
      expect(r.stderr, `${what}: the message does not say what to do`).toMatch(/move it away/)
      expect(r.stderr, `${what}: the message does not name --data-dir`).toContain("--data-dir")
      expectUnchanged(what, dir, before)
    }
  }

  it("random bytes as p2pchat.db", async () => {
    const dir = tempDir("p2pchat-faults-random-")
    fs.writeFileSync(path.join(dir, DB), randomBytes(8192))
    await refusesAll(dir, /not a SQLite database|damaged/)
  })

  it("a damaged p2pchat database (its header intact, page 2 overwritten with random bytes)", async () => {
    const dir = tempDir("p2pchat-faults-damaged-")
    const made = await runCli(["chat", "--data-dir", dir])
    expect(made.code, made.stderr).toBe(0)
    const file = path.join(dir, DB)
    const bytes = fs.readFileSync(file)
    expect(bytes.length).toBeGreaterThanOrEqual(3 * 4096)
    bytes.set(randomBytes(4096), 4096)
    fs.writeFileSync(file, bytes)
    await refusesAll(dir, /damaged|malformed/)
  })

  it("a foreign SQLite database (another program's tables)", async () => {
    const dir = tempDir("p2pchat-faults-foreign-")
    const db = openRaw(path.join(dir, DB))
    db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    db.prepare("INSERT INTO notes (body) VALUES (?)").run(["someone else's data"])
    db.close()
    await refusesAll(dir, /not a p2pchat database/)
  })

  it("a foreign SQLite database in WAL mode whose program died with transactions still in the -wal file", async () => {
    const dir = tempDir("p2pchat-faults-foreign-wal-")
    const file = path.join(dir, DB)
    // Another program, in WAL mode, that is killed before a checkpoint: its last
    // transactions live only in p2pchat.db-wal. Simulated in a child process that exits
    // without closing the database.
    const script = `
      ${openInChild(file)}
      db.exec("PRAGMA journal_mode = WAL")
      db.exec("PRAGMA wal_autocheckpoint = 0")
      db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
      for (let i = 0; i < 20; i++) db.prepare("INSERT INTO notes (body) VALUES (?)").run("note " + i)
      process.exit(0)
    `
    const made = await runCli(["-e", script], { command: [process.execPath] })
    expect(made.code, made.stderr).toBe(0)
    expect(fs.statSync(`${file}-wal`).size, "the -wal file should hold the other program's transactions").toBeGreaterThan(0)
    // The -shm file is only an index of the -wal that any reader may rebuild; the database
    // and its -wal (the other program's data) must stay exactly as they are.
    fs.rmSync(`${file}-shm`, { force: true })
    const before = new Map([DB, `${DB}-wal`].map((f) => [f, fs.readFileSync(path.join(dir, f))] as const))
    const spec = await loneNode(dir)
    for (const [what, args] of dbCommands(spec)) {
      const r = await runCli(args, { timeoutMs: 15_000 })
      expectRefused(what, r)
      expect(r.stderr).toMatch(/not a p2pchat database/)
      const damage = [...before].flatMap(([f, bytes]) => {
        const now = fs.existsSync(path.join(dir, f)) ? fs.readFileSync(path.join(dir, f)) : undefined
        if (now === undefined) return [`${f} was deleted`]
        return now.equals(bytes) ? [] : [`${f} changed (${bytes.length} -> ${now.length} bytes)`]
      })
      expect(damage, `${what} touched the other program's database`).toEqual([])
    }
  })
})

describe("the TCP port already in use: the message names the port and --tcp-port", () => {
  it("a port held by another program (a node:net server on 127.0.0.1)", async () => {
    const spec = await loneNode(tempDir("p2pchat-faults-port-"))
    servers.push(await sentinel(LOOPBACK, spec.tcpPort))
    const r = await runCli(["start", ...optionsOf(spec)], { timeoutMs: 15_000 })
    expectRefused("start", r)
    expect(r.stderr).toContain(`TCP port ${spec.tcpPort}`)
    expect(r.stderr).toMatch(/already in use/)
    expect(r.stderr).toContain("--tcp-port")
  })

  it("two nodes with the same --tcp-port: the second exits 1, the first keeps serving", async () => {
    const { alice, bob } = await pair()
    const a = startNode(alice)
    await a.waitForLine((l) => l.includes(`listening on TCP ${LOOPBACK}:${alice.tcpPort}`), { stream: "stderr", timeoutMs: 8_000 })
    const second: NodeSpec = { ...bob, tcpPort: alice.tcpPort }
    const r = await runCli(["start", ...optionsOf(second)], { timeoutMs: 15_000 })
    expectRefused("the second start", r)
    expect(r.stderr).toContain(`TCP port ${alice.tcpPort}`)
    expect(r.stderr).toMatch(/already in use/)
    expect(r.stderr).toContain("--tcp-port")
    // the first node was not disturbed: bob (on his own port) still reaches it
    expect(a.running()).toBe(true)
    const b = startNode(bob)
    await b.waitForJson(isPeer("alice", "online"), 8_000)
    b.child.stdin!.write("msg alice still here\n")
    await a.waitForJson((e) => e.event === "message" && e.from === "bob" && e.text === "still here", 8_000)
  })
})

describe("a data dir that cannot be used: a clear message, exit 1", () => {
  // Permission bits cannot be tested here: the tests run as root, which chmod does not stop.
  it("a path under a regular file (<tmp>/file/sub)", async () => {
    const tmp = tempDir("p2pchat-faults-dir-")
    const file = path.join(tmp, "file")
    fs.writeFileSync(file, "not a directory\n")
    const dir = path.join(file, "sub")
    const spec = await loneNode(dir)
    for (const [what, args] of dbCommands(spec)) {
      const r = await runCli(args, { timeoutMs: 15_000 })
      expectRefused(what, r)
      expect(r.stderr, `${what}: the message does not name the data dir`).toContain(dir)
      expect(r.stderr, `${what}: the message does not say what is wrong`).toMatch(/not a directory/)
      expect(r.stderr, `${what}: the message does not say what to do`).toContain("--data-dir")
    }
    expect(fs.readFileSync(file, "utf8")).toBe("not a directory\n")
  })

  it("the data dir is a regular file, or p2pchat.db is a directory", async () => {
    const tmp = tempDir("p2pchat-faults-dir-")
    const file = path.join(tmp, "file")
    fs.writeFileSync(file, "not a directory\n")
    for (const [what, args] of dbCommands(await loneNode(file))) {
      const r = await runCli(args, { timeoutMs: 15_000 })
      expectRefused(what, r)
      expect(r.stderr).toContain(file)
      expect(r.stderr).toMatch(/not a directory/)
      expect(r.stderr).toContain("--data-dir")
    }
    expect(fs.readFileSync(file, "utf8")).toBe("not a directory\n")

    const dir = tempDir("p2pchat-faults-dbdir-")
    fs.mkdirSync(path.join(dir, DB))
    for (const [what, args] of dbCommands(await loneNode(dir))) {
      const r = await runCli(args, { timeoutMs: 15_000 })
      expectRefused(what, r)
      expect(r.stderr).toContain(path.join(dir, DB))
      expect(r.stderr).toMatch(/not a regular file/)
      expect(r.stderr).toMatch(/move it away|--data-dir/)
    }
  })
})

describe("two p2pchat processes on one data dir", () => {
  it("`send` and `history` while `start` runs on that data dir (and stores arriving messages) work", async () => {
    const { alice, bob } = await pair()
    const a = startNode(alice)
    const b = startNode(bob)
    await Promise.all([a.waitForJson(isPeer("bob", "online"), 8_000), b.waitForJson(isPeer("alice", "online"), 8_000)])
    // `send` finds bob in the peers alice's node saves in the data dir
    await waitFor("bob in alice's saved peers", async () => {
      const r = await runCli(["peers", "--json", ...optionsOf(alice)])
      return r.code === 0 && (JSON.parse(r.stdout) as Array<{ username: string }>).some((p) => p.username === "bob") ? true : undefined
    }, 5_000, 100)

    // Alice's node keeps writing while the other processes run: bob streams to her.
    const incoming = Array.from({ length: 300 }, (_, i) => `in${i}`)
    b.child.stdin!.write(incoming.map((t) => `msg alice ${t}\n`).join(""))
    const sends = Array.from({ length: 4 }, (_, i) => runCli(["send", "bob", `beside-${i}`, ...optionsOf(alice), "--json"], { timeoutMs: 20_000 }))
    const histories = Array.from({ length: 3 }, () => runCli(["history", "--json", ...optionsOf(alice)], { timeoutMs: 20_000 }))
    const results = await Promise.all([...sends, ...histories])
    for (const [i, r] of results.entries()) {
      const what = i < sends.length ? `send beside-${i}` : "history --json"
      expect(r.code, `${what} beside a running node\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
    }
    for (const r of results.slice(0, sends.length)) expect(JSON.parse(r.stdout)).toMatchObject({ peer: "bob", state: "delivered" })
    for (const r of results.slice(sends.length)) expect(Array.isArray(JSON.parse(r.stdout))).toBe(true)

    // bob got the four, and alice's node got bob's whole stream meanwhile
    for (let i = 0; i < 4; i++) await b.waitForJson((e) => e.event === "message" && e.from === "alice" && e.text === `beside-${i}`, 8_000)
    await a.waitForJson((e) => e.event === "message" && e.from === "bob" && e.text === incoming.at(-1), 20_000)
    await a.stop()
    const r = await runCli(["history", "bob", "--json", ...optionsOf(alice)])
    expect(r.code, r.stderr).toBe(0)
    const rows = JSON.parse(r.stdout) as Array<{ direction: string; text: string; state: string }>
    expect(rows.filter((x) => x.direction === "received").map((x) => x.text)).toEqual(incoming)
    expect(rows.filter((x) => x.direction === "sent").map((x) => `${x.text} ${x.state}`).sort())
      .toEqual([0, 1, 2, 3].map((i) => `beside-${i} delivered`))
    expect(a.stderr.filter((l) => /SQLITE_BUSY|database is locked/i.test(l))).toEqual([])
  }, 60_000)
})

describe("the peer's address changed between announcements", () => {
  it("bob restarts on 127.0.0.2 with the same name and key: the pending and the new message go to the new address", async () => {
    const { alice: a0, bob: b0 } = await pair()
    // alice announces to bob's UDP port on both addresses, so that bob hears her wherever he is
    const alice: NodeSpec = { ...a0, targets: [`${LOOPBACK}:${b0.udpPort}`, `${OTHER_LOOPBACK}:${b0.udpPort}`] }
    const bobHere = b0
    const bobThere: NodeSpec = { ...b0, bind: OTHER_LOOPBACK }
    const a = startNode(alice)
    const b1 = startNode(bobHere)
    await Promise.all([a.waitForJson(isPeer("bob", "online"), 8_000), b1.waitForJson(isPeer("alice", "online"), 8_000)])
    a.child.stdin!.write("msg bob before the move\n")
    await b1.waitForJson((e) => e.event === "message" && e.text === "before the move", 8_000)
    await a.waitForJson((e) => e.event === "delivered" && e.to === "bob", 8_000)

    // kill -9: no bye, alice still has bob at 127.0.0.1. A message now fails and stays pending.
    b1.child.kill("SIGKILL")
    await b1.exited
    const from = a.stdout.length
    a.child.stdin!.write("msg bob while moving\n")
    await a.waitForLine((l) => l.startsWith('{"event":"error","message":"not delivered'), { from, timeoutMs: 15_000 })

    // Something else takes bob's old address and port: nothing may go there any more.
    const old = await sentinel(LOOPBACK, bobHere.tcpPort)
    servers.push(old)
    const b2 = startNode(bobThere)
    const moved = await a.waitForJson((e) => e.event === "peer" && e.username === "bob" && e.address === OTHER_LOOPBACK, 8_000)
    expect(moved.value).toMatchObject({ port: bobThere.tcpPort, status: "online" })
    // the pending message is retried to the new address
    await b2.waitForJson((e) => e.event === "message" && e.from === "alice" && e.text === "while moving", 10_000)
    // and a new one goes there too
    a.child.stdin!.write("msg bob after the move\n")
    await b2.waitForJson((e) => e.event === "message" && e.from === "alice" && e.text === "after the move", 8_000)
    await waitFor("both acked", () => (a.json().filter((e) => e.event === "delivered" && e.to === "bob").length >= 3 ? true : undefined), 8_000)
    expect(old.connections(), "a connection went to bob's old address").toBe(0)

    // The saved registry follows the live one within a flush (250 ms), under load a little later.
    const saved = await waitFor("bob's new address in alice's saved peers", async () => {
      const r = await runCli(["peers", "--json", ...optionsOf(alice)])
      expect(r.code, r.stderr).toBe(0)
      const bob = (JSON.parse(r.stdout) as Array<any>).find((p) => p.username === "bob")
      return bob?.address === OTHER_LOOPBACK ? bob : undefined
    }, 5_000, 250)
    expect(saved).toMatchObject({ address: OTHER_LOOPBACK, port: bobThere.tcpPort })
    await a.stop()
    const h = await runCli(["history", "bob", "--json", ...optionsOf(alice)])
    expect((JSON.parse(h.stdout) as Array<any>).map((x) => `${x.text} ${x.state}`))
      .toEqual(["before the move delivered", "while moving delivered", "after the move delivered"])
  }, 60_000)
})

// ---------------------------------------------------------------------------------------------
// Disk full

/**
 * Runs a node with its data dir on a 2 MiB tmpfs mounted in a private mount namespace
 * (`unshare -m`: the host's mounts are not touched, and the mount disappears with the
 * process). A watcher inside the namespace fills the tmpfs when the file `<ctl>.fill`
 * appears and frees it when `<ctl>.free` appears (answering `<ctl>.filled` / `<ctl>.freed`);
 * it ends with the node, or after 2 minutes at most.
 */
const SMALL_DISK = `set -e; mnt="$1"; ctl="$2"; shift 2
mount -t tmpfs -o size=2m tmpfs "$mnt"; me=$$
( i=0; while kill -0 $me 2>/dev/null && [ $i -lt 2400 ]; do
    if [ -e "$ctl.fill" ]; then rm -f "$ctl.fill"; dd if=/dev/zero of="$mnt/fill" bs=4k 2>/dev/null || true; touch "$ctl.filled"; fi
    if [ -e "$ctl.free" ]; then rm -f "$ctl.free" "$mnt/fill"; touch "$ctl.freed"; fi
    sleep 0.05; i=$((i+1)); done ) &
exec "$@"`

const canMountTmpfs = (() => {
  if (process.getuid?.() !== 0) return false
  const dir = tempDir("p2pchat-faults-probe-")
  const r = spawnSync("unshare", ["-m", "sh", "-c", `mount -t tmpfs -o size=1m tmpfs "${dir}" && touch "${dir}/x"`], { timeout: 10_000 })
  return r.status === 0 && !fs.existsSync(path.join(dir, "x")) // the mount stayed private
})()

interface SmallDisk {
  readonly fill: () => Promise<void>
  readonly free: () => Promise<void>
}

const startOnSmallDisk = (n: NodeSpec): { readonly proc: CliProcess; readonly disk: SmallDisk } => {
  const ctl = path.join(tempDir("p2pchat-faults-ctl-"), "ctl")
  const proc = spawnCli(["start", ...optionsOf(n), "--json"], {
    stdin: "pipe",
    command: ["unshare", "-m", "sh", "-c", SMALL_DISK, "sh", n.dataDir, ctl, process.execPath, BIN]
  })
  const signal = async (what: "fill" | "free", done: string) => {
    fs.rmSync(`${ctl}.${done}`, { force: true })
    fs.writeFileSync(`${ctl}.${what}`, "")
    await waitFor(`the disk to ${what}`, () => (fs.existsSync(`${ctl}.${done}`) ? true : undefined), 10_000)
  }
  return { proc, disk: { fill: () => signal("fill", "filled"), free: () => signal("free", "freed") } }
}

/** The history a node shows at its console (`history PEER`, a JSON array with --json). */
const consoleHistory = async (proc: CliProcess, peer: string): Promise<Array<{ id: string; direction: string; text: string; state: string }>> => {
  const from = proc.stdout.length
  proc.child.stdin!.write(`history ${peer}\n`)
  const { line } = await proc.waitForLine((l) => l.startsWith("["), { from, timeoutMs: 8_000 })
  return JSON.parse(line)
}

const messageTo = (proc: CliProcess, from: string, text: string) =>
  proc.waitForJson((e) => e.event === "message" && e.from === from && e.text === text, 15_000)

describe.skipIf(!canMountTmpfs)("the disk fills up under a running node (tmpfs in a private mount namespace)", () => {
  it("the receiver's disk is full: it tells its user and does not ack; once space is back the message arrives exactly once", async () => {
    const { alice, bob: b0 } = await pair()
    const bob: NodeSpec = { ...b0, dataDir: tempDir("p2pchat-faults-mnt-") }
    const { proc: b, disk } = startOnSmallDisk(bob)
    const a = startNode(alice)
    await Promise.all([a.waitForJson(isPeer("bob", "online"), 8_000), b.waitForJson(isPeer("alice", "online"), 8_000)])
    a.child.stdin!.write("msg bob before 1\nmsg bob before 2\n")
    await messageTo(b, "alice", "before 2")

    await disk.fill()
    const from = a.stdout.length
    a.child.stdin!.write("msg bob while full\n")
    // bob's user is told why
    const told = await b.waitForJson((e) => (e.event === "error" || e.event === "warning") && /full/i.test(e.message), 10_000)
    expect(told.value.message).toMatch(/not acknowledged|not stored|could not store/i)
    // ... and alice is not told it was delivered: it stays pending (her ack wait runs out)
    await a.waitForLine((l) => l.startsWith('{"event":"error","message":"not delivered'), { from, timeoutMs: 15_000 })
    const aliceSeesPending = await consoleHistory(a, "bob")
    expect(aliceSeesPending.find((r) => r.text === "while full")?.state).toBe("pending")
    expect(b.running(), "bob died of a full disk").toBe(true)

    await disk.free()
    await messageTo(b, "alice", "while full")
    await waitFor("alice sees all three delivered", async () => {
      const rows = await consoleHistory(a, "bob")
      return rows.filter((r) => r.state === "delivered").length === 3 ? true : undefined
    }, 15_000, 500)
    const rows = await consoleHistory(b, "alice")
    expect(rows.map((r) => `${r.direction} ${r.text}`)).toEqual(["received before 1", "received before 2", "received while full"])
  }, 60_000)

  it("the sender's disk is full: the message is kept in memory as pending, the user is told, and it goes once space is back", async () => {
    const { alice: a0, bob } = await pair()
    const alice: NodeSpec = { ...a0, dataDir: tempDir("p2pchat-faults-mnt-") }
    const { proc: a, disk } = startOnSmallDisk(alice)
    const b = startNode(bob)
    await Promise.all([a.waitForJson(isPeer("bob", "online"), 8_000), b.waitForJson(isPeer("alice", "online"), 8_000)])
    a.child.stdin!.write("msg bob before 1\nmsg bob before 2\n")
    await messageTo(b, "alice", "before 2")
    await waitFor("two acks", () => (a.json().filter((e) => e.event === "delivered").length >= 2 ? true : undefined), 8_000)

    await disk.fill()
    const from = a.stdout.length
    a.child.stdin!.write("msg bob while full\n")
    // the user is told, with the reason
    const told = await a.waitForLine((l) => /full|no space/i.test(l), { from, timeoutMs: 10_000 })
    expect(told.line).toMatch(/disk is full|no space/i)
    expect(a.running(), "alice died of a full disk").toBe(true)
    await sleep(1_000)

    await disk.free()
    await messageTo(b, "alice", "while full")
    await waitFor("alice sees all three delivered", async () => {
      const rows = await consoleHistory(a, "bob")
      return rows.filter((r) => r.state === "delivered").length === 3 ? true : undefined
    }, 15_000, 500)
    const rows = await consoleHistory(a, "bob")
    expect(rows.map((r) => `${r.direction} ${r.text} ${r.state}`))
      .toEqual(["sent before 1 delivered", "sent before 2 delivered", "sent while full delivered"])
    await b.stop()
    const h = await runCli(["history", "alice", "--json", ...optionsOf(bob)])
    expect((JSON.parse(h.stdout) as Array<any>).map((r) => r.text)).toEqual(["before 1", "before 2", "while full"])
  }, 60_000)
})

// The clock jumping backwards or forwards is not tested here: these processes must not
// change the host's clock. The registry's away and expiry timers run on monotonic time,
// which test/unit/registry.test.ts covers with TestClock (a wall-clock jump back changes
// nothing).
