// A counting HTTP proxy for the scale benchmark: forwards every request to the upstream given
// (keeping connections open), counts them by X-Amz-Target operation, and answers
// GET /__counts with the counts as JSON. A Python proxy in the benchmark's own process relayed
// a thousand leases' renewals late enough to lose leases; this one costs the workers nothing.
'use strict';
const http = require('http');
const [upHost, upPort] = [process.argv[2], Number(process.argv[3])];
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const counts = {};
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/__counts') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(counts));
    return;
  }
  const target = req.headers['x-amz-target'] || req.method;
  const op = target.split('.').pop();
  counts[op] = (counts[op] || 0) + 1;
  const up = http.request({ host: upHost, port: upPort, method: req.method, path: req.url,
                            headers: req.headers, agent }, (upRes) => {
    res.writeHead(upRes.statusCode, upRes.headers);
    upRes.pipe(res);
  });
  up.on('error', () => { res.destroy(); });
  req.pipe(up);
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => { console.log(server.address().port); });
