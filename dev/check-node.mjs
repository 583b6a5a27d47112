// Run before `npm run dev` and `npm test` (package.json scripts): on a Node older than the one
// package.json's "engines" names, one line saying so instead of a stack trace from a newer API.
// Plain JavaScript with nothing newer than Node 14 can parse, so old versions reach the message.
var required = [22, 12];
var parts = process.versions.node.split(".").map(Number);
var tooOld = parts[0] < required[0] || (parts[0] === required[0] && parts[1] < required[1]);
if (tooOld) {
  process.stderr.write(
    "sluice needs Node " + required.join(".") + " or newer; this is Node " + process.versions.node +
      ". Install a current one (e.g. `nvm install 22`, or https://nodejs.org) and run the command again.\n",
  );
  process.exit(1);
}
