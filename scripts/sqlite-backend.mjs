// postinstall: p2pchat stores its history with the runtime's own node:sqlite (Node >= 22.13),
// so installing builds nothing native. A runtime without it (Node 20) needs better-sqlite3,
// which compiles SQLite when no prebuilt binary can be fetched: it is installed here, only
// there, at the version the project is tested with. It is not declared in package.json:
// npm would then install (and build) it on every runtime, or, declared as an optional peer,
// refuse to add it here.
import { execFileSync } from "node:child_process"
import { createRequire } from "node:module"

const BETTER_SQLITE3 = "better-sqlite3@12.11.1"
const require = createRequire(import.meta.url)

const has = (id) => {
  try {
    require(id)
    return true
  } catch {
    return false
  }
}

if (process.env.P2PCHAT_SQLITE_SETUP === "1" || has("node:sqlite")) process.exit(0)
if (has("better-sqlite3")) process.exit(0)
console.log(`p2pchat: Node ${process.versions.node} has no node:sqlite; installing ${BETTER_SQLITE3} (it may compile SQLite)`)
try {
  execFileSync(process.platform === "win32" ? "npm.cmd" : "npm", ["install", "--no-save", "--no-audit", "--no-fund", BETTER_SQLITE3], {
    stdio: "inherit",
    env: { ...process.env, P2PCHAT_SQLITE_SETUP: "1" }
  })
} catch {
  console.error(
    `p2pchat: could not install ${BETTER_SQLITE3}. Use Node 22.13 or later (its node:sqlite needs nothing), ` +
      `or install it yourself: npm install --no-save ${BETTER_SQLITE3} (needs python3, make and g++ when no prebuilt binary fits)`
  )
  process.exit(1)
}
