# packaging: PEP 440 versions, specifiers, requirements and markers.
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version


def handler(ctx):
    data = ctx.bodyAsJson()
    versions = sorted(data["versions"], key=Version)
    spec = SpecifierSet(data["specifier"])
    req = Requirement(data["requirement"])
    ctx.json({
        "sorted": versions,
        "matching": [str(v) for v in spec.filter(versions, prereleases=False)],
        "latestMatching": str(max(spec.filter(versions))),
        "requirement": {"name": req.name, "extras": sorted(req.extras), "specifier": str(req.specifier),
                        "marker": str(req.marker)},
        "markerOn311": req.marker.evaluate({"python_version": "3.11", "sys_platform": "linux"}),
        "prerelease": [Version(v).is_prerelease for v in versions],
    })
