"""Upstream delivery as the daemon runs it: one TargetDelivery per configured target, built from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.epcis.profiles import PartnerProfile, load_profiles, profile_from_market
from edge.errors import ConfigError, ConfigIssue
from edge.sync.capture import BasicCredentials, BearerToken, CaptureClient, CaptureTimeouts, make_ssl_context
from edge.sync.delivery import CaptureSender, FileDropSender, LineFacts, Sender, TargetDelivery
from edge.sync.filedrop import FileDropTarget

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from datetime import datetime
    from pathlib import Path

    from edge.config.models import AuthConfig, LineConfig, UpstreamTarget
    from edge.epcis.validate import EpcisSchemas
    from edge.markets.models import MarketPack
    from edge.store import Store


def _secret(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), 1, 1, f"cannot read the {what}: {exc.strerror}")]) from exc
    if not value:
        raise ConfigError([ConfigIssue(str(path), 1, 1, f"the {what} file is empty")])
    return value


def _auth(cfg: AuthConfig | None) -> BearerToken | BasicCredentials | None:
    if cfg is None:
        return None
    if cfg.bearer_token_file is not None:
        return BearerToken(_secret(cfg.bearer_token_file, "bearer token"))
    if cfg.username is None or cfg.password_file is None:  # the config model refuses this; for the type checker
        return None
    return BasicCredentials(cfg.username, _secret(cfg.password_file, "password"))


def make_sender(target: UpstreamTarget) -> Sender:
    """Return the sender of one target (capture client or file drop); ConfigError for unreadable secrets."""
    if target.kind == "file_drop":
        if target.directory is None:
            raise ConfigError([ConfigIssue("<config>", 1, 1, f"upstream target {target.id} needs a directory")])
        return FileDropSender(FileDropTarget(target.directory))
    if target.url is None:
        raise ConfigError([ConfigIssue("<config>", 1, 1, f"upstream target {target.id} needs a url")])
    tls = target.tls
    ssl = make_ssl_context(tls.ca_file, tls.client_cert, tls.client_key) if tls is not None else None
    timeouts = CaptureTimeouts(request_s=target.request_timeout_s, job_deadline_s=target.job_timeout_s)
    return CaptureSender(CaptureClient(target.url, ssl, auth=_auth(target.auth), timeouts=timeouts))


class ProfileChooser:
    """Which partner profile a batch is written with for one target: the target's, else the batch market's."""

    def __init__(self, target: UpstreamTarget, profiles: Mapping[str, PartnerProfile],
                 markets: Mapping[str, MarketPack]) -> None:
        self._target = target
        self._profiles = profiles
        self._markets = markets

    def __call__(self, batch_id: int, market: str) -> PartnerProfile:
        """Return the profile for batch_id, made for market."""
        del batch_id  # the same profile for every batch of a market; the batch is named for the log
        if self._target.profile is not None:
            return self._profiles[self._target.profile]
        pack = self._markets.get(market)
        if pack is None:
            raise ConfigError([ConfigIssue("<catalog>", 1, 1, f"no market pack {market!r} for its EPCIS profile")])
        return profile_from_market(pack.epcis)


def check_profiles(config: LineConfig, profiles: Mapping[str, PartnerProfile]) -> list[ConfigIssue]:
    """Return a problem for each target naming a profile that does not exist."""
    source = str(config.source) if config.source is not None else "<config>"
    return [
        ConfigIssue(source, 1, 1, f'upstream target "{t.id}": no partner profile "{t.profile}" in '
                    f"{config.catalog.partners} (profiles: {', '.join(sorted(profiles)) or 'none'})")
        for t in config.upstream.targets if t.profile is not None and t.profile not in profiles
    ]


def build_deliveries(
    config: LineConfig,
    store: Store,
    markets: Mapping[str, MarketPack],
    *,
    schemas: EpcisSchemas | None,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> list[TargetDelivery]:
    """Return a delivery per enabled upstream target; ConfigError for missing profiles or unreadable secrets."""
    if not config.upstream.targets:
        return []
    profiles = load_profiles(config.catalog.partners) if config.catalog.partners.is_dir() else {}
    issues = check_profiles(config, profiles)
    if issues:
        raise ConfigError(issues)
    facts = LineFacts(config.line.id, config.line.location, config.epcis.biz_location, config.epcis.timezone,
                      config.line.site_gln)
    deliveries = []
    for target in config.upstream.targets:
        chooser = ProfileChooser(target, profiles, markets)
        extra: dict[str, object] = {}
        if clock is not None:
            extra["clock"] = clock
        if sleep is not None:
            extra["sleep"] = sleep
        deliveries.append(TargetDelivery(
            store, target, sender=make_sender(target), facts=facts, profile_for=chooser,
            schemas=schemas, **extra,  # type: ignore[arg-type]
        ))
    return deliveries
