"""Each audit record as an OCSF Detection Finding (class 2004) with the Security Control profile.

Why this class: the Open Cybersecurity Schema Framework (OCSF, the schema
AWS Security Lake, Splunk and most SIEMs ingest) has no class for "a kernel
refused a DMA descriptor", and the nearest are a *Detection Finding* -- a
security product detected something and reports it -- and, for what the
product did about it, the *Security Control* profile (``action_id`` 2
Denied, ``disposition_id`` 2 Blocked).  That is what an audit record is:
the verifier (a security control) detected a hostile descriptor and blocked
it.  A *System Activity / Kernel Activity* event would describe the kernel
doing something, not a detection and a refusal.

``REQUIRED`` is the excerpt of OCSF 1.2.0 (the release tagged v1.2.0 of
github.com/ocsf/ocsf-schema) that a consumer checks: every attribute the
class, its parents (``finding``, ``base_event``, the ``classification`` and
``occurrence`` includes), the profile and the required objects mark
``"requirement": "required"``, with its type (``integer_t``, ``long_t``,
``timestamp_t`` -- milliseconds since the epoch -- ``string_t``, an object).
``SELECT_SQL`` maps the ``records`` table (auditor/table.py) onto it; the
mapping table is in docs/auditing.md.  The chain's provenance (head and
anchor, auditor/provenance.py) rides in ``unmapped.export`` of every event,
and ``metadata.correlation_uid`` is the head hash, so a SIEM keeps both with
each event (a sidecar file would be lost at ingest).
"""

from __future__ import annotations

from auditor.table import quote

#: The OCSF release the mapping follows.
OCSF_VERSION = "1.2.0"
CLASS_UID = 2004  # Detection Finding
CATEGORY_UID = 2  # Findings
ACTIVITY_ID = 1  # Create: a new finding per record
TYPE_UID = CLASS_UID * 100 + ACTIVITY_ID
ACTION_DENIED = 2  # security_control profile: action_id
DISPOSITION_BLOCKED = 2
#: Severity per record (OCSF severity_id: 1 Informational, 2 Low, 3 Medium, 4 High): a descriptor or fault that
#: reached for the kernel's or another tenant's memory is High; an IOMMU fault is High; a register write outside
#: the doorbell is Medium; a deferred unpin is bookkeeping, Informational; anything else (bad length, wrap, a
#: frame of her own not pinned, a bad tail) is Low.
SEVERITY_SQL = """CASE
    WHEN owner = 'kernel' OR owner LIKE 'tenant%' OR kind = 'iommu' THEN 4
    WHEN kind = 'register' THEN 3
    WHEN kind = 'pin' THEN 1
    ELSE 2
END"""
SEVERITY_NAMES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High"}

#: OCSF 1.2.0's required attributes of a Detection Finding with the Security Control profile: path -> type.
#: ``object`` is a JSON object, ``integer_t``/``long_t`` JSON integers, ``timestamp_t`` an integer of ms.
REQUIRED: dict[str, str] = {
    "activity_id": "integer_t",
    "category_uid": "integer_t",
    "class_uid": "integer_t",
    "type_uid": "long_t",
    "time": "timestamp_t",
    "severity_id": "integer_t",
    "action_id": "integer_t",  # profiles/security_control.json
    "metadata": "object",
    "metadata.product": "object",
    "metadata.product.vendor_name": "string_t",
    "metadata.version": "string_t",
    "finding_info": "object",
    "finding_info.title": "string_t",
    "finding_info.uid": "string_t",
}


def select_sql(provenance_json: str) -> str:
    """The OCSF event of each row of ``records``, one JSON object per row (columns are its top-level keys)."""
    severity_names = "CASE severity_id " + " ".join(f"WHEN {k} THEN '{v}'" for k, v in SEVERITY_NAMES.items())
    where = (
        "coalesce(nic, '-') || CASE WHEN queue IS NULL THEN '' ELSE '/' || "
        "CASE WHEN kind IN ('tx', 'rx') THEN kind ELSE 'q' END || queue END"
        " || CASE WHEN kind IN ('tx', 'rx') AND ring_index IS NOT NULL THEN '[' || ring_index || ']'"
        " ELSE ' ' || kind END"
    )
    return f"""
WITH r AS (SELECT *, {SEVERITY_SQL} AS severity_id, {where} AS place FROM records)
SELECT
    {ACTIVITY_ID} AS activity_id,
    'Create' AS activity_name,
    {CATEGORY_UID} AS category_uid,
    'Findings' AS category_name,
    {CLASS_UID} AS class_uid,
    'Detection Finding' AS class_name,
    {TYPE_UID}::BIGINT AS type_uid,
    'Detection Finding: Create' AS type_name,
    epoch_ms(wall::TIMESTAMP) AS "time",
    severity_id,
    {severity_names} END AS severity,
    {ACTION_DENIED} AS action_id,
    'Denied' AS action,
    {DISPOSITION_BLOCKED} AS disposition_id,
    'Blocked' AS disposition,
    tenant_name || '(' || tenant || ') ' || place || ': ' || reason || ': ' || coalesce(rule, '') AS message,
    struct_pack(
        version := '{OCSF_VERSION}',
        product := struct_pack(name := 'nic-sandbox verifier', vendor_name := 'nic-sandbox'),
        profiles := ['security_control'],
        log_name := 'audit',
        sequence := seq,
        uid := hash,
        original_time := strftime(wall, '%Y-%m-%dT%H:%M:%S.%nZ'),
        correlation_uid := json_extract_string({quote(provenance_json)}, '$.head')
    ) AS metadata,
    struct_pack(
        uid := hash,
        title := reason,
        "desc" := rule,
        types := [kind]
    ) AS finding_info,
    [struct_pack(type := kind, name := place, uid := desc_hex)] AS resources,
    struct_pack(
        tenant := tenant,
        tenant_name := tenant_name,
        nic := nic,
        queue := queue,
        ring_index := ring_index,
        protection := protection,
        desc_addr := desc_addr,
        desc_length := desc_length,
        first_bad_byte := first_bad_byte,
        frame := frame,
        owner := owner,
        detail := detail::JSON,
        prev := prev,
        export := {quote(provenance_json)}::JSON
    ) AS unmapped
FROM r"""  # in log order: DuckDB keeps insertion order without a sort (preserve_insertion_order)
