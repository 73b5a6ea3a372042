#!/usr/bin/env node
// A stand-in for an OpenClaw gateway, run by fleetctl's tests with an absolute Node path.
//   openclaw.mjs --profile NAME gateway run --port P [--bind loopback]
//   openclaw.mjs --profile NAME config validate      (checks $OPENCLAW_CONFIG_PATH)
//   openclaw.mjs --version
// Like the real one it needs a writable cache dir ($XDG_CACHE_HOME or ~/.cache), answers
// /healthz at once and /readyz only once "ready", restarts itself by exiting 0 (POST /restart),
// hot-reloads its config file, colours its log lines, and exits 78 when it cannot start.
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";

const VERSION = "2026.9.6-fake";
const KNOWN = new Set(["gateway", "agents", "logging", "readyAfterMs"]);
const green = (s) => `\x1b[32m${s}\x1b[0m`;
const red = (s) => `\x1b[31m${s}\x1b[0m`;

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const profile = opt("--profile", "default");
const home = process.env.HOME || os.homedir();
const liveConfig = path.join(home, `.openclaw-${profile}`, "openclaw.json");
const configPath = process.env.OPENCLAW_CONFIG_PATH || liveConfig;

function problems(text) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return [`invalid JSON: ${e.message}`];
  }
  return Object.keys(doc)
    .filter((k) => !KNOWN.has(k))
    .map((k) => `Unrecognized key: "${k}" (at <root>)`);
}

function readConfig(file) {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return "{}";
  }
}

if (args.includes("--version")) {
  console.log(VERSION);
  process.exit(0);
}

if (args.includes("config") && args.includes("validate")) {
  // Like the real CLI, the validator leans on the agent's world: here it needs its own bin
  // shim on PATH (the unit's PATH, not cron's) to ask for the gateway's version.
  const self = spawnSync("openclaw", ["--version"], { encoding: "utf8" });
  if (self.error || self.status !== 0) {
    console.error(`openclaw: cannot find the openclaw CLI on PATH (${process.env.PATH})`);
    process.exit(127);
  }
  const found = problems(readConfig(configPath));
  if (found.length) {
    // The reason first, then chatter: a validator whose last lines hide the reason.
    console.error(red("Config invalid") + ` (${configPath}):`);
    for (const p of found) console.error(`  - ${p}`);
    for (let i = 1; i <= 5; i++) console.error(`  checked section ${i} of 5`);
    console.error("Run `openclaw doctor` for more.");
    process.exit(1);
  }
  console.log(green("Config valid"));
  process.exit(0);
}

// gateway run
const port = Number(opt("--port", "0"));
const cacheRoot = process.env.XDG_CACHE_HOME || path.join(home, ".cache");
const tempDir = path.join(cacheRoot, "openclaw-0");
try {
  fs.mkdirSync(tempDir, { recursive: true });
  fs.writeFileSync(path.join(tempDir, "boot"), String(process.pid));
} catch (e) {
  console.error(red(`Unable to create fallback OpenClaw temp dir: ${tempDir}: ${e.code} ${e.message}`));
  process.exit(78);
}
let config = readConfig(configPath);
const bad = problems(config);
if (bad.length) {
  console.error(red(`Invalid config at ${configPath}: ${bad.join("; ")}`));
  process.exit(78);
}
const readyAfter = Number(JSON.parse(config).readyAfterMs ?? 1500);
const started = Date.now();
const boot = `${process.pid}-${started}`;

fs.watchFile(configPath, { interval: 200 }, () => {
  const text = readConfig(configPath);
  if (problems(text).length) console.log("config reload skipped (invalid config)");
  else console.log("config reloaded");
});

const server = http.createServer((req, res) => {
  if (req.url === "/healthz") return res.writeHead(200).end("ok");
  if (req.url === "/readyz") {
    const ready = Date.now() - started >= readyAfter;
    return res.writeHead(ready ? 200 : 503).end(ready ? "ready" : "starting");
  }
  if (req.url === "/boot") return res.writeHead(200).end(boot);
  if (req.url === "/restart" && req.method === "POST") {
    res.writeHead(202).end("restarting");
    console.log("restart requested: exiting 0 for the supervisor to start a fresh process");
    return setTimeout(() => process.exit(0), 50);
  }
  res.writeHead(404).end();
});
server.listen(port, "127.0.0.1", () => {
  console.log(green(`gateway listening on 127.0.0.1:${port}`) + ` (node ${process.version}, cache ${tempDir})`);
});
process.on("SIGTERM", () => {
  console.log("draining, then exiting");
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
});
