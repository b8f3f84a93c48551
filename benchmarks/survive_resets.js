// Preloaded into kinesalite and dynalite: both throw from a request's 'error' event, so one
// client killed mid-request (the scale benchmark's kill -9) took the whole server down. A reset
// connection ends that request only; anything else still ends the process, as before.
'use strict';
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.message === 'aborted')) {
    return;
  }
  console.error(err);
  process.exit(1);
});
