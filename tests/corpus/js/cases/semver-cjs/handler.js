// CommonJS entry using semver (CommonJS only, depends on lru-cache -> yallist).
const semver = require("semver");
const Range = require("semver/classes/range");

module.exports = function handler(ctx) {
  const { versions, range } = ctx.bodyAsJson();
  ctx.json({
    sorted: semver.sort([...versions]),
    satisfying: versions.filter((v) => semver.satisfies(v, range)),
    max: semver.maxSatisfying(versions, range),
    next: semver.inc(versions[0], "minor"),
    coerced: semver.coerce("v2.3-beta").version,
    range: new Range(range).range,
    valid: versions.map((v) => semver.valid(v)),
  });
};
