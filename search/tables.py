"""The store's tables as SQLAlchemy rows: studies, candidates, evaluations, events, study leases and labels."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from evaluators.vocabulary import Status, StudyStatus


def utcnow() -> datetime:
    """Now in UTC without a zone: the DateTime columns hold naive UTC times on both backends."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _word_column(words: type[Status | StudyStatus]) -> Enum:
    """A status column: VARCHAR(20) holding the plain values (as stores always have), read back as members."""
    return Enum(
        words,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda enum: [member.value for member in enum],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class StudyRow(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    space: Mapped[str] = mapped_column(String(50))
    algorithm: Mapped[str] = mapped_column(String(50))
    status: Mapped[StudyStatus] = mapped_column(_word_column(StudyStatus), default=StudyStatus.CREATED)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    budget_evaluations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_minutes: Mapped[float | None] = mapped_column(Float, nullable=True)
    objectives: Mapped[list[Any]] = mapped_column(JSON)  # [{"name": ..., "direction": ...}]
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    active_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # wall time spent running, over all runs


class CandidateRow(Base):
    __tablename__ = "candidates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    key: Mapped[str] = mapped_column(String(64))  # hash of the canonical form
    canonical: Mapped[str] = mapped_column(Text)
    genome: Mapped[dict[str, Any]] = mapped_column(JSON)
    formula: Mapped[str] = mapped_column(Text, default="")
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    origin: Mapped[str] = mapped_column(String(20))  # seed, sample, mutate, crossover, optuna
    seed_name: Mapped[str | None] = mapped_column(String(50), nullable=True)  # baseline name for seeds
    parents: Mapped[list[Any]] = mapped_column(JSON, default=list)
    mutation_op: Mapped[str | None] = mapped_column(String(50), nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), nullable=True)
    proposal: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # algorithm data (e.g. Optuna params)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (
        Index("ix_candidates_study_key", "study_id", "key"),
        Index("ix_candidates_study_fp", "study_id", "fingerprint"),
        Index("ix_candidates_study_id", "study_id", "id"),
    )


class EvaluationRow(Base):
    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    purpose: Mapped[str] = mapped_column(String(20), default="search")  # search, rerank
    status: Mapped[Status] = mapped_column(_word_column(Status))
    stage: Mapped[str | None] = mapped_column(String(30), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    queued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # worker-side compute
    stage_seconds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    objectives: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (
        Index("ix_evaluations_study_id", "study_id", "id"),
        Index("ix_evaluations_study_status", "study_id", "status"),
        Index("ix_evaluations_candidate", "candidate_id"),
    )


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), nullable=True)
    time: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (Index("ix_events_study_id", "study_id", "id"),)


class LeaseRow(Base):
    """Which driver runs a study, and until when its claim holds unless renewed (see ``search.lease``)."""

    __tablename__ = "study_leases"
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    token: Mapped[str] = mapped_column(String(32))  # one per claim: renewals and releases match on it
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    machine: Mapped[str] = mapped_column(Text)  # host, boot and PID namespace: where ``pid`` can be checked
    process_start: Mapped[str] = mapped_column(String(40))  # tells a reused pid from the holder
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    renewed_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)  # set to the release time when the driver ends


class StudyLabelRow(Base):
    """A study's tags and note, written by the user (``layerforge tag``/``note``), never by a driver.

    A table of its own rather than columns on ``studies``: stores written before it existed read back unchanged,
    even read-only (a reader finds no table and sees no labels); a writer's ``create_all`` adds it.
    """

    __tablename__ = "study_labels"
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)  # sorted, unique
    note: Mapped[str] = mapped_column(Text, default="")
