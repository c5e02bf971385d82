"""What publication records, and the one check that a stored version is what was published.

A published version's folder holds, besides the files its manifest names::

    manifest.sig       the publisher's signature over {project, version, manifest sha256}
                       (:mod:`mlops_core.signing`); the manifest lists every file's sha256
    publication.json   the commit marker, written last: the manifest's sha256 and the S3
                       object version (``VersionId``) of every file, the manifest and the
                       signature, as S3 assigned them at publish time: the *pins*

Everything downstream pins a version by these values (the pointer, the task definition,
serving's downloads by ``VersionId``), never by what the bucket holds now. Every object of
a published version is written once (conditional creates, Object Lock), so the folder
holds exactly one version of each key; a second version, a delete marker or a file the
record does not name means someone wrote there after publication: an integrity failure,
never a new state to converge on.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_core.artifacts import MANIFEST, SHA256_RE, VERSION_RE
from mlops_core.errors import IntegrityError

SIGNATURE = "manifest.sig"
PUBLICATION = "publication.json"
STATEMENT_TYPE = "mlops.platform.io/model-version/v1"


def version_statement(project: str, version: str, manifest_sha256: str) -> dict[str, Any]:
    """The payload a version's signature covers."""
    return {
        "type": STATEMENT_TYPE,
        "project": project,
        "version": version,
        "manifest_sha256": manifest_sha256,
    }


class Pins(BaseModel):
    """A version as publication recorded it: the manifest digest and every object's
    S3 version id (by file name, the manifest and the signature included)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest_sha256: str = Field(pattern=SHA256_RE.pattern)
    objects: dict[str, str] = Field(description="file name -> S3 VersionId")

    def objects_json(self) -> str:
        """The object versions as one compact value (a task definition's environment)."""
        return json.dumps(self.objects, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_values(cls, manifest_sha256: str, objects_json: str, where: str) -> Pins:
        try:
            return cls(manifest_sha256=manifest_sha256, objects=json.loads(objects_json))
        except (ValueError, ValidationError) as exc:
            raise IntegrityError(
                f"malformed pins: {exc}",
                where=where,
                hint="pins are written by the platform from the publication record; "
                "re-deploy the version",
            ) from None

    def check_names(self, names: set[str], where: str) -> None:
        expected = names | {MANIFEST, SIGNATURE}
        if set(self.objects) != expected:
            raise IntegrityError(
                f"the pins name {sorted(self.objects)}, the manifest {sorted(expected)}",
                where=where,
            )


class Publication(BaseModel):
    """``publication.json``."""

    model_config = ConfigDict(extra="forbid")

    project: str
    version: str = Field(pattern=VERSION_RE.pattern)
    pins: Pins
    published_at: datetime
    published_by: str

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def check_single_versions(listing: dict[str, list[dict[str, Any]]], pins: Pins, where: str) -> None:
    """Refuse a version folder that was written to after publication.

    ``listing`` maps each key's name (relative to the folder) to its object versions and
    delete markers, as ListObjectVersions reports them."""
    for name, versions in sorted(listing.items()):
        if name == PUBLICATION:
            if len(versions) != 1 or versions[0].get("DeleteMarker"):
                raise IntegrityError(
                    f"{PUBLICATION} was rewritten or deleted after publication",
                    where=where,
                    hint="someone wrote to a published version; restore it or retire it",
                )
            continue
        pinned = pins.objects.get(name)
        if pinned is None:
            raise IntegrityError(
                f"{name} was added after publication", where=f"{where}{name}",
                hint="someone wrote to a published version; do not use it",
            )  # fmt: skip
        if (
            len(versions) != 1
            or versions[0].get("DeleteMarker")
            or versions[0]["VersionId"] != pinned
        ):
            raise IntegrityError(
                f"{name} was overwritten or deleted after publication "
                f"({len(versions)} object versions, pinned {pinned})",
                where=f"{where}{name}",
                hint="someone wrote to a published version; the pinned object is the "
                "published one, but do not use this version until it is investigated",
            )
    missing = sorted(set(pins.objects) - set(listing))
    if missing:
        raise IntegrityError(
            f"{', '.join(missing)} named by the publication record but missing",
            where=where,
        )
