#!/usr/bin/env bash
# Install the pinned agent CLIs (Claude Code, Codex, Gemini CLI) into scripts/agent-clis/node_modules,
# idempotently: `npm ci` runs only when the lockfile or package.json is newer than the stamp that the
# last good install left. The rehearsal tests and demo call the binaries in node_modules/.bin
# directly (never npx, which asks the registry). Prints one line.
set -euo pipefail
cd "$(dirname "$0")/agent-clis"
stamp=node_modules/.runstop-installed

if [ -f "$stamp" ] && [ ! package-lock.json -nt "$stamp" ] && [ ! package.json -nt "$stamp" ]; then
  echo "clis: up to date in scripts/agent-clis/node_modules ($(cat "$stamp"))"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "clis: npm not found; install Node.js 20+ to run the agent-CLI rehearsal tests" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
  echo "clis: Node.js 20 or newer is needed (found $(node -v 2>/dev/null || echo none))" >&2
  exit 1
fi
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! npm ci --prefix . --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
  cat "$log" >&2
  echo "clis: npm ci failed" >&2
  exit 1
fi
versions=$(node -e '
  const names = ["@anthropic-ai/claude-code", "@openai/codex", "@google/gemini-cli"];
  console.log(names.map(n => n.split("/")[1] + " " + require("./node_modules/" + n + "/package.json").version).join(", "));
')
echo "$versions" >"$stamp"
echo "clis: installed $versions in $(( $(date +%s) - start )) s"
