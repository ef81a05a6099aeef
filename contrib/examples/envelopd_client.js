#!/usr/bin/env node
// envelopd client over the Unix socket, Node's http module only.
//
//   ENVELOPD_SOCKET=/run/envelopd/envelopd.sock node envelopd_client.js encrypt TENANT IN OUT
//   node envelopd_client.js decrypt IN OUT
//   node envelopd_client.js datakey TENANT          (prints the JSON answer)
//
// Bodies are streamed from and to files. The daemon identifies the caller
// by its uid/gid (SO_PEERCRED): a [[clients]] rule must allow the operation.
// Exit status 1 and one "envelopd_client:" line on any failure; OUT is
// written as OUT.part and renamed only when the whole body arrived.
'use strict';
const fs = require('fs');
const http = require('http');

const socketPath = process.env.ENVELOPD_SOCKET || '/run/envelopd/envelopd.sock';

function fail(msg) {
  console.error('envelopd_client: ' + msg);
  process.exit(1);
}

function request(method, path, headers, body, onResponse) {
  const req = http.request({ socketPath, method, path, headers }, (res) => {
    if (res.statusCode < 200 || res.statusCode > 299) {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let msg = res.statusMessage;
        try { const e = JSON.parse(text).error; msg = `${e.message} (${e.code})`; } catch (_) { /* not JSON */ }
        fail(`${method} ${path}: HTTP ${res.statusCode}: ${msg}`);
      });
      return;
    }
    onResponse(res);
  });
  req.on('error', (e) => fail(e.message));
  if (body instanceof fs.ReadStream) {
    body.on('error', (e) => fail(e.message));
    body.pipe(req);
  } else {
    req.end(body);
  }
}

function stream(path, src, dst) {
  const size = fs.statSync(src).size;
  const body = fs.createReadStream(src);
  request('POST', path, { 'Content-Length': size, 'Content-Type': 'application/octet-stream' }, body, (res) => {
    const tmp = dst + '.part';
    const out = fs.createWriteStream(tmp);
    // 'aborted'/'error' on res: the daemon broke the transfer off, its
    // only signal that a stream failed after it started.
    const broken = (why) => { out.destroy(); fs.rmSync(tmp, { force: true }); fail(`incomplete response: ${why}`); };
    res.on('aborted', () => broken('aborted'));
    res.on('error', (e) => broken(e.message));
    res.pipe(out);
    out.on('finish', () => {
      if (!res.complete) { broken('aborted'); return; }
      const fd = fs.openSync(tmp, 'r+');
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fs.renameSync(tmp, dst);
    });
  });
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'encrypt' && args.length === 3) {
  stream(`/v1/tenants/${encodeURIComponent(args[0])}/encrypt`, args[1], args[2]);
} else if (cmd === 'decrypt' && args.length === 2) {
  stream('/v1/decrypt', args[0], args[1]);
} else if (cmd === 'datakey' && args.length === 1) {
  request('POST', `/v1/tenants/${encodeURIComponent(args[0])}/datakey`, { 'Content-Type': 'application/json' }, '{}', (res) => {
    res.pipe(process.stdout);
  });
} else {
  console.error('usage: node envelopd_client.js encrypt TENANT IN OUT | decrypt IN OUT | datakey TENANT');
  process.exit(2);
}
