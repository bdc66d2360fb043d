// An ES module importing CommonJS packages: default and named exports (Node's interop),
// plus a package with `exports` conditions (js-yaml resolves to its .mjs).
import semver, { satisfies, SemVer } from "semver";
import yaml from "js-yaml";
import pkg from "semver/package.json" with { type: "json" };

export const handler = async (ctx) => {
  const { version } = ctx.bodyAsJson();
  return {
    major: semver.major(version),
    named: satisfies(version, ">=1"),
    cls: new SemVer(version).prerelease,
    yaml: yaml.dump({ version }),
    pkgName: pkg.name,
    defaultIsExports: typeof semver.parse === "function",
  };
};
