// file-throughput, file-throughput-vs-disk and file-peak-rss: one file (1 GiB in the full
// run; --file-mb N) from one node to another on loopback, hashed and stored durably at the
// end, against two baselines measured in the same run, on the same file system (one temp
// dir holds the source file and every copy):
//
//   - disk: the same bytes read from the source and written to a new file, fsync
//     (bench/baseline/file-disk.mjs);
//   - plain: the smallest plain Node program doing what a transfer does, two processes
//     (bench/baseline/file-plain.mjs: SHA-256 first, node:net, ChaCha20-Poly1305 per chunk of
//     p2pchat's size, write, SHA-256 check, fsync, rename);
//   - p2pchat: bob is a `p2pchat start --downloads DIR` process whose console (stdin) is told `accept ID` as the offer shows;
//     alice is a whole node in the driver process (bench/drivers/file-sender.ts), which sends
//     bob a first secure message (keys pinned both ways) and then calls Initiator.sendFile,
//     as `send-file` does.
//
// Each is timed by the harness the same way: from the line the sending process prints as it
// starts (before it reads the file to hash it) to the line the receiving process prints when
// the file is in place (p2pchat: bob's `file` event with state "done"). MB/s are 10^6 bytes
// a second. The runs alternate disk, plain, p2pchat, so that all three see the same disk.
// Peak RSS is each process's VmHWM (/proc/PID/status) when the transfer ends: bob's read by
// the harness, alice's by herself; the figure is the larger of the two nodes.
import { randomBytes, randomFillSync } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { CHUNK } from "../baseline/file-chunk.mjs"
import { spawnTracked, stop, waitFor, waitForPorts } from "../lib/proc.mjs"

const ALICE_HOST = "127.0.0.21"
const BOB_HOST = "127.0.0.22"

/** Peak RSS (VmHWM) of a running process, in MB. */
const hwmMB = (pid) => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN) / 1024

/** A file of `bytes` random bytes, made durable (so that writing it back does not disturb the runs). */
const makeSource = (file, bytes) => {
  const fd = fs.openSync(file, "wx")
  const block = Buffer.alloc(16 << 20)
  for (let done = 0; done < bytes;) {
    const n = Math.min(block.length, bytes - done)
    randomFillSync(block, 0, n)
    fs.writeSync(fd, block, 0, n)
    done += n
  }
  fs.fsyncSync(fd)
  fs.closeSync(fd)
}

/** Parses the JSON lines of a child; `on` gets each object and the time it was read. */
const jsonLines = (on) => (line) => {
  if (!line.startsWith("{")) return
  let o
  try {
    o = JSON.parse(line)
  } catch {
    return
  }
  on(o, performance.now())
}

/** Throws when `child` has ended (and every line of its output has been read). */
const exitedEarly = (child, what) => {
  if (child.exitCode !== null && child.stdout.closed) throw new Error(`${what} exited (${child.exitCode}): ${child.stderrText.trim().split("\n").slice(-5).join(" | ")}`)
}

/**
 * The step: `h` is the harness (bench/run.mjs): NODE, CLI, SIZE.file ({ mb, runs }),
 * startNode, freshDir, bundleDriver, record, notMeasured, baselineDone.
 */
export const fileThroughput = (h) => async () => {
  const { mb, runs, timeoutMs } = h.SIZE.file
  const bytes = Math.round(mb * 1024 * 1024)
  const dir = h.freshDir("files")
  fs.mkdirSync(dir, { recursive: true })
  const source = path.join(dir, "source.bin")
  makeSource(source, bytes)
  const mbps = (ms) => bytes / 1e6 / (ms / 1000)
  const key = randomBytes(32).toString("hex")

  const disk = async (r) => {
    const copy = path.join(dir, `disk-${r}.bin`)
    let t0
    let ms
    const child = spawnTracked(h.NODE, [path.join(h.BASELINE, "file-disk.mjs"), "--src", source, "--dst", copy], {
      onLine: jsonLines((o, at) => {
        if (o.start) t0 = at
        if (o.done) ms = at - t0
      })
    })
    await waitFor("the disk baseline", () => ms ?? exitedEarly(child, "file-disk.mjs"), timeoutMs)
    await child.exited
    fs.rmSync(copy)
    return mbps(ms)
  }

  const plain = async (r) => {
    const into = path.join(dir, `plain-${r}`)
    fs.mkdirSync(into)
    let port
    let end
    const receiver = spawnTracked(h.NODE, [path.join(h.BASELINE, "file-plain.mjs"), "receive", "--dir", into, "--key", key], {
      onLine: jsonLines((o, at) => {
        if (o.listening) port = o.listening
        if (o.done) end = { at, hwm: o.hwmMB }
      })
    })
    await waitFor("the plain receiver", () => port ?? exitedEarly(receiver, "file-plain.mjs receive"), 10_000)
    let t0
    let sent
    const sender = spawnTracked(h.NODE, [
      path.join(h.BASELINE, "file-plain.mjs"), "send", "--port", String(port), "--file", source, "--key", key
    ], {
      onLine: jsonLines((o, at) => {
        if (o.start) t0 = at
        if (o.sent !== undefined) sent = o
      })
    })
    await waitFor("the plain transfer", () => {
      if (end !== undefined && sent !== undefined) return true
      if (end === undefined) exitedEarly(receiver, "file-plain.mjs receive")
      if (sent === undefined) exitedEarly(sender, "file-plain.mjs send")
    }, timeoutMs)
    await Promise.all([receiver.exited, sender.exited])
    fs.rmSync(into, { recursive: true })
    return { mbps: mbps(end.at - t0), hwm: Math.max(end.hwm, sent.hwmMB) }
  }

  const driver = await h.bundleDriver("file-sender")
  const p2p = async () => {
    const downloads = h.freshDir("bob-downloads")
    let end
    let failed
    const bob = await h.startNode("bob", {
      bind: BOB_HOST,
      extra: ["--announce-every", "1s", "--downloads", downloads],
      // bob's console reads its commands from this pipe: he accepts the offer as it shows
      stdin: "pipe",
      onEvent: (e) => {
        if (e.event !== "file" || e.direction !== "in") return
        if (e.state === "offered") bob.stdin.write(`accept ${e.id}\n`)
        if (e.state === "done") end ??= { at: performance.now(), hwm: hwmMB(bob.pid), path: e.path, size: e.size }
        if (e.state === "failed" || e.state === "declined") failed ??= `bob's transfer ended ${e.state}: ${e.reason ?? ""}`
      }
    })
    let t0
    let result
    let alice
    try {
      const { udp } = await waitForPorts(bob, { tcp: true, udp: true })
      alice = spawnTracked(h.NODE, [
        driver, "--data-dir", h.freshDir("alice"), "--name", "alice", "--bind", ALICE_HOST, "--peer", "bob",
        "--peer-udp", `${BOB_HOST}:${udp}`, "--file", source, "--timeout-s", String(Math.ceil(timeoutMs / 1000))
      ], {
        onLine: jsonLines((o, at) => {
          if (o.start) {
            t0 = at
            if (o.chunk !== CHUNK) failed ??= `p2pchat's chunk is ${o.chunk} bytes, the baselines' ${CHUNK}: update bench/baseline/file-chunk.mjs`
          } else result = o
        })
      })
      await waitFor("the p2pchat transfer", () => {
        if (failed !== undefined) throw new Error(failed)
        if (result?.error !== undefined) throw new Error(`alice: ${result.error}`)
        if (end !== undefined && result !== undefined) return true
        exitedEarly(bob, "bob")
        if (result === undefined) exitedEarly(alice, "alice's driver")
      }, timeoutMs + 30_000)
      if (!result.done) throw new Error(`alice's side of the transfer ended ${result.state}: ${result.reason ?? ""}`)
      const size = fs.statSync(end.path).size
      if (size !== bytes) throw new Error(`bob's file ${end.path} has ${size} bytes, not ${bytes}`)
      return { mbps: mbps(end.at - t0), hwm: Math.max(end.hwm, result.hwmMB), bob: end.hwm, alice: result.hwmMB }
    } finally {
      await Promise.all([stop(bob), alice ? stop(alice) : undefined])
      fs.rmSync(downloads, { recursive: true, force: true })
    }
  }

  const base = { disk: [], plain: [], plainRss: [] }
  const mine = { mbps: [], rss: [], bob: [], alice: [] }
  try {
    for (let r = 0; r < runs; r++) {
      base.disk.push(await disk(r))
      const p = await plain(r)
      base.plain.push(p.mbps)
      base.plainRss.push(p.hwm)
      h.baselineDone("file-throughput", base.plain)
      h.baselineDone("file-throughput-vs-disk", base.disk)
      h.baselineDone("file-peak-rss", base.plainRss)
      const n = await p2p()
      mine.mbps.push(n.mbps)
      mine.rss.push(n.hwm)
      mine.bob.push(n.bob)
      mine.alice.push(n.alice)
    }
  } catch (e) {
    const why = String(e.message ?? e).replace(/\s+/g, " ").slice(0, 300)
    h.notMeasured("file-throughput-vs-disk", why)
    h.notMeasured("file-peak-rss", why)
    throw e
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const size = mb >= 1024 ? `${(mb / 1024).toFixed(mb % 1024 === 0 ? 0 : 2)} GiB` : `${mb} MiB`
  const list = (xs) => xs.map((x) => x.toFixed(0)).join("/")
  h.record("file-throughput", mine.mbps, base.plain,
    `one ${size} file, alice (a node in the driver process) to bob (\`p2pchat start\`, accepting at the offer), from ` +
    `send-file (the file read and hashed) until bob's file is in place (hash checked, fsynced, renamed); baseline: ` +
    `bench/baseline/file-plain.mjs, the same job in plain Node (node:net, ChaCha20-Poly1305 per ${CHUNK}-byte chunk, SHA-256, fsync)`)
  h.record("file-throughput-vs-disk", mine.mbps, base.disk,
    `the same transfers; baseline: the disk alone, the same bytes read and written to a new file with fsync (bench/baseline/file-disk.mjs)`)
  h.record("file-peak-rss", mine.rss, base.plainRss,
    `VmHWM of the larger of the two nodes when the transfer ends, per run: bob ${list(mine.bob)} MB, alice ${list(mine.alice)} MB; ` +
    `baseline: the larger of the plain program's two processes`)
}
