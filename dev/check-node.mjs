// Run before `npm run dev` and `npm test` (package.json scripts): on a Node older than the one
// package.json's "engines" names, one line saying so instead of a stack trace from a newer API.
// Plain JavaScript with nothing newer than Node 14 can parse, so old versions reach the message.
var parts = process.versions.node.split(".");
var major = Number(parts[0]);
var minor = Number(parts[1]);
if (major < 22 || (major === 22 && minor < 12)) {
  process.stderr.write(
    // biome-ignore lint/style/useTemplate: this file must run on any old Node, to say it is too old
    "sluice needs Node 22.12 or newer; this is Node " + process.versions.node + ". Install a current one (e.g. `nvm install 22`, or https://nodejs.org) and run the command again.\n",
  );
  process.exit(1);
}
