"""Third-party browser assets, fetched pinned from the npm registry and verified against the
registry's ``dist.integrity`` (sha512), into the cache QuestDB's jar shares: never copied into
the repository, never loaded from a CDN by the page.

lightweight-charts (TradingView, Apache-2.0) draws the dashboard's chart; the page keeps the
attribution link it asks for (its ``attributionLogo``, on by default). Redoc (MIT) renders
``/schema``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tarfile
import urllib.request
from pathlib import Path

import msgspec

from sql.questdb_local import cache_dir

__all__ = ["ASSETS", "Asset", "ensure_assets"]

log = logging.getLogger(__name__)

_REGISTRY = "https://registry.npmjs.org"


class Asset(msgspec.Struct, frozen=True):
    """One file of a pinned npm package, served by the API at ``/assets/{name}``."""

    name: str  # as served
    package: str
    version: str
    integrity: str  # the registry's dist.integrity of the tarball: "sha512-<base64>"
    member: str  # the file inside the tarball

    @property
    def tarball_url(self) -> str:
        return f"{_REGISTRY}/{self.package}/-/{self.package.rsplit('/', 1)[-1]}-{self.version}.tgz"

    def path(self, cache: Path) -> Path:
        return cache / "npm" / f"{self.package.replace('/', '+')}-{self.version}" / self.name


ASSETS = {
    asset.name: asset
    for asset in (
        Asset(
            "lightweight-charts.js",
            "lightweight-charts",
            "5.2.1",
            "sha512-IVwoK1RLFiLPubaKIjNbtjWLnpPMqiABSrTay6whmNa8L1+19292VtHJ+BWyPUuLCwF0tcQlhEWd1CLB2a1nsQ==",
            "package/dist/lightweight-charts.standalone.production.js",
        ),
        Asset(  # /schema's interactive docs
            "redoc.standalone.js",
            "redoc",
            "2.5.4",  # 3.x no longer reads the <redoc spec-url> element Litestar's page uses
            "sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==",
            "package/bundles/redoc.standalone.js",
        ),
    )
}


class AssetError(Exception):
    pass


def ensure_assets(cache: Path | None = None) -> dict[str, Path]:
    """Each asset's file, fetched and verified first where it is not cached yet. An asset that
    cannot be fetched is left out (logged): the API serves without it."""
    cache = cache or cache_dir()
    found = {}
    for asset in ASSETS.values():
        target = asset.path(cache)
        if not target.exists():
            try:
                _fetch(asset, target)
            except (OSError, AssetError) as exc:
                log.warning("could not fetch %s %s: %s", asset.package, asset.version, exc)
                continue
        found[asset.name] = target
    return found


def _fetch(asset: Asset, target: Path) -> None:
    log.info("fetching %s %s from the npm registry", asset.package, asset.version)
    with urllib.request.urlopen(asset.tarball_url, timeout=60) as response:  # noqa: S310 (https, pinned)
        tarball = response.read()
    algorithm, _, expected = asset.integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if actual != expected:
        raise AssetError(f"{asset.tarball_url}: {algorithm} {actual} is not the pinned {expected}")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        member = archive.extractfile(asset.member)
        if member is None:
            raise AssetError(f"{asset.tarball_url} has no {asset.member}")
        content = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_suffix(".part")
    scratch.write_bytes(content)
    scratch.replace(target)
