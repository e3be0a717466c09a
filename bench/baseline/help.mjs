// The baseline of cold-start-help: a plain Node program that prints a help text of the
// same size as p2pchat's and exits. It is the floor: starting Node itself.
const help = `DESCRIPTION
  serverless chat for your LAN

USAGE
  p2pchat <subcommand> [flags]

FLAGS
  --name string              your username (env P2PCHAT_NAME); asked when missing
  --data-dir string          where history and keys live (env P2PCHAT_DATA_DIR)
  --udp-port string          presence port, default 6000 (env P2PCHAT_UDP_PORT)
  --tcp-port string          chat port, default 6001 (env P2PCHAT_TCP_PORT)
  --bind string              IPv4 address to listen on, default all (env P2PCHAT_BIND)
  --target string            HOST[:PORT] to announce to as well, repeatable (env P2PCHAT_TARGETS, comma list)
  --announce-every string    announcement interval, default 8s
  --away-after string        a silent peer is away after, default 10s
  --expire-after string      a silent peer is removed after, default 15m
  --json                     machine-readable output: JSON (lines)
  --log-level string         debug, info, warning, error or none (env P2PCHAT_LOG_LEVEL)

GLOBAL FLAGS
  --help, -h       Show help information
  --version, -v    Show version information

SUBCOMMANDS
  start       the whole node: announcer, discovery, responder, initiator and the console (default)
  announce    announce your username on the LAN (the original Announcement.py)
  discover    listen for peers and print each change as it happens (PeerDiscover.py)
  respond     the responder alone; prints every message it receives (ChatResponder.py)
  chat        the console alone, using the peers and history in the data dir (ChatInitiator.py)
  peers       the peers known now, with status
  send        send one message; exit 0 once delivered (acked), or sent to a classic peer
  history     the conversation with USER, or all
  whoami      your name, fingerprint, data dir and ports
  trust       accept a peer's changed key after checking its fingerprint
`
process.stdout.write(help)
