// A load balancer in front of tidewire-server nodes: nginx (the Debian
// package) started by the test on a free loopback port with a generated
// configuration, a plain round-robin upstream (no ip_hash, no sticky
// cookie), as deploy/nginx.conf.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./cluster.mjs";

const NGINX = process.env.NGINX_BIN ?? (existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx");

/**
 * Starts nginx on 127.0.0.1 in front of `upstreams` (`http://127.0.0.1:PORT`
 * URLs), round-robin. Resolves once it answers, with `{url, stop(),
 * accessLog()}`; the access log has one line per request: `upstream method
 * sid status`.
 */
export async function startNginx(upstreams, { workerConnections = 1024 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "tidewire-nginx-"));
  for (const d of ["client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"]) mkdirSync(join(dir, d));
  const port = await freePort();
  const servers = upstreams.map((u) => `    server ${new URL(u).host} max_fails=0;`).join("\n");
  const asRoot = process.getuid?.() === 0 ? "user root root;" : "";
  const conf = `${asRoot}
worker_processes 1;
worker_rlimit_nofile ${workerConnections * 2 + 64};
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
daemon off;
events { worker_connections ${workerConnections}; }
http {
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  log_format lb '$upstream_addr $request_method $arg_sid $status';
  access_log ${dir}/logs/access.log lb;
  upstream tidewire {
${servers}
    keepalive 32;
  }
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://tidewire;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 75s;
      proxy_buffering off;
      proxy_next_upstream error timeout http_503;
      proxy_next_upstream_tries 3;
    }
  }
}
`;
  writeFileSync(join(dir, "nginx.conf"), conf);
  const proc = spawn(NGINX, ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "logs/error.log")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((r) => proc.once("exit", r));
  proc.once("error", (e) => (stderr += String(e)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nginx exited: ${stderr}`);
    const res = await fetch(url + "/readyz").catch(() => null);
    if (res) break;
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`nginx did not answer within 10 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    accessLog() {
      try {
        return readFileSync(join(dir, "logs/access.log"), "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => {
            const [upstream, method, sid, status] = l.split(" ");
            return { upstream, method, sid, status: Number(status) };
          });
      } catch {
        return [];
      }
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
