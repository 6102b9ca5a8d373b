"""The sandbox's whole state and its business rules, free of HTTP.

The web layer (``sandbox.app``) reads a request, asks this module what to answer and sleeps
where it is told to; everything that decides an answer lives here and runs synchronously,
so the single event loop never interleaves two updates of the same customer.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.masterdata import MasterData, load_master_data
from sandbox import responses
from sandbox.checks import check_mandatory, check_master_data, lookup_key, onboard_key
from sandbox.config import SandboxConfig
from sandbox.customers import CustomerStore, id_key
from sandbox.scenarios import Case, Scenario, load_scenarios
from sandbox.stats import SlidingWindow, Stats
from sandbox.tokens import Grant, TokenStore

JSON_TYPE = "application/json"

# The pre-loaded "existing" customer; placeholders, not anybody's data.
EXISTING_BODY: dict[str, Any] = {
    "first_name": "Sandbox",
    "middle_name": "",
    "last_name": "Existing",
    "agent_location_id": "SANDBOX",
    "primary_mobile_number": "+971500000000",
    "email_id": "existing@sandbox.invalid",
    "id_details": [{"date_of_expiry": "2030-12-31"}],
}
ONCE_CASES = frozenset(
    {Case.LOOKUP_INTERNAL_ERROR_ONCE, Case.CREATE_502_ONCE, Case.CREATE_502_AFTER_COMMIT}
)


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer: HTTP status, body bytes, extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Faults:
    """The random faults drawn for one business call."""

    too_many: bool = False
    timeout: bool = False
    bad_gateway: bool = False
    internal_error: bool = False
    after_commit: bool = False


NO_FAULTS = Faults()


@dataclass(frozen=True, slots=True)
class OnboardRequest:
    """An onboarding body that passed the partner's checks."""

    body: dict[str, Any]
    id_type: str
    id_number: str
    ecrn: str | None


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


class SandboxState:
    """Configuration, tokens, customers, scenarios and counters of one sandbox process."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.master: MasterData = load_master_data(config.master_data_dir)
        self.scenarios: dict[str, Scenario] = load_scenarios(config.scenarios_file)
        self.tokens = TokenStore()
        self.customers = CustomerStore()
        self.stats = Stats()
        self.rng = random.Random(config.seed)
        self._admitted = SlidingWindow()
        self._once_fired: set[str] = set()
        self._not_subscribed: set[str] = set()
        self.reset()

    # -- administration -------------------------------------------------------------------

    def reset(self) -> None:
        """Clear customers, counters and fired "once" scenarios; keep config and tokens."""
        self.customers.clear()
        self.stats.reset()
        self._admitted.clear()
        self._once_fired.clear()
        self.rng.seed(self.config.seed)
        self._not_subscribed = {
            s.ecrn for s in self.scenarios.values() if s.case is Case.NOT_SUBSCRIBED and s.ecrn
        }
        for scenario in self.scenarios.values():
            if scenario.case is Case.EXISTING:
                self.customers.create(
                    id_key("4", scenario.id_number), EXISTING_BODY, ecrn=scenario.ecrn
                )

    def reconfigure(self, changes: dict[str, Any]) -> SandboxConfig:
        """Apply run-time knob changes; reload data files whose path changed.

        Raises pydantic's ValidationError, MasterDataError or ScenarioError and then leaves
        the running configuration untouched.
        """
        new = self.config.updated(changes)
        master = self.master
        if new.master_data_dir != self.config.master_data_dir:
            master = load_master_data(new.master_data_dir)
        scenarios = self.scenarios
        if new.scenarios_file != self.config.scenarios_file:
            scenarios = load_scenarios(new.scenarios_file)
        self.config, self.master = new, master
        if "seed" in changes:
            self.rng.seed(new.seed)
        if scenarios is not self.scenarios:
            self.scenarios = scenarios
            self.reset()
        return new

    def snapshot(self) -> dict[str, Any]:
        """The stats document."""
        return self.stats.snapshot(len(self.customers))

    # -- pace and faults ------------------------------------------------------------------

    def latency(self) -> float:
        """Seconds to wait before answering a business call."""
        config = self.config
        jitter = self.rng.uniform(0.0, config.jitter_ms) if config.jitter_ms else 0.0
        return (config.latency_ms + jitter) / 1000.0

    def rate_limited(self, path: str, now: float) -> Reply | None:
        """A 429 when the requests-per-second cap is reached, else None (call admitted)."""
        limit = self.config.rps_limit
        if not limit:
            return None
        if self._admitted.count(now) >= limit:
            self.stats.rate_limited += 1
            wait = max(1, math.ceil(self._admitted.seconds_until_room(now)))
            return self._too_many(path, wait)
        self._admitted.add(now)
        return None

    def _too_many(self, path: str, retry_after: int) -> Reply:
        body = responses.gateway_error(429, "Too Many Requests", path)
        return Reply(429, body, {"Retry-After": str(retry_after)})

    def draw_faults(self, endpoint: str) -> Faults:
        """Draw this call's random faults from the seeded generator."""
        config = self.config
        if not (
            config.fault_429
            or config.fault_timeout
            or config.fault_502
            or config.fault_45006
            or config.fault_502_after_commit
        ):
            return NO_FAULTS
        draw = self._draw
        faults = Faults(
            too_many=draw(config.fault_429, "fault_429"),
            timeout=draw(config.fault_timeout, "fault_timeout"),
            bad_gateway=endpoint in ("onboard", "token") and draw(config.fault_502, "fault_502"),
            internal_error=endpoint == "lookup" and draw(config.fault_45006, "fault_45006"),
            after_commit=endpoint == "onboard"
            and draw(config.fault_502_after_commit, "fault_502_after_commit"),
        )
        return NO_FAULTS if faults == NO_FAULTS else faults

    def _draw(self, rate: float, name: str) -> bool:
        # No draw at rate 0 keeps the sequence of a seeded run independent of unused knobs.
        if rate <= 0.0 or self.rng.random() >= rate:
            return False
        self.stats.faults[name] += 1
        return True

    def fault_reply(self, faults: Faults, path: str) -> Reply | None:
        """The answer forced by a 429 or 502 fault, if any (timeouts are the caller's)."""
        if faults.too_many:
            return self._too_many(path, self.config.retry_after_s)
        if faults.bad_gateway:
            return Reply(502, responses.BACKEND_502)
        return None

    def delay_for(self, id_number: str | None) -> float:
        """Extra seconds the "slow" scenario adds for this ID number."""
        scenario = self.scenarios.get(id_number) if id_number else None
        if scenario is not None and scenario.case is Case.SLOW:
            return self.config.slow_ms / 1000.0
        return 0.0

    def _once(self, scenario: Scenario) -> bool:
        """True the first time a "once" scenario is met for its ID number."""
        if scenario.id_number in self._once_fired:
            return False
        self._once_fired.add(scenario.id_number)
        return True

    # -- token endpoint -------------------------------------------------------------------

    def token(self, raw_form: dict[str, str], now: float) -> Reply:
        """Answer the token endpoint."""
        result = self.tokens.grant(raw_form, self.config, now)
        if isinstance(result, Grant):
            kind = "password" if raw_form["grant_type"] == "password" else "refresh"
            self.stats.grants[kind] += 1
            return Reply(200, responses.dumps(result.body()))
        self.stats.token_errors[result.error] += 1
        return Reply(result.status, responses.token_error(result.error, result.description))

    def authorized(self, authorization: str | None, now: float) -> bool:
        """True when the Authorization header carries a live bearer token."""
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.tokens.valid(token.strip(), now)

    # -- lookup ---------------------------------------------------------------------------

    def parse_lookup(self, raw: bytes) -> tuple[str, str] | Reply:
        """The lookup's (idType, idNumber), or the 40001 answer for an implausible body or an
        idType that is not an ID-type code."""
        key = lookup_key(_json(raw))
        if key is None or key[0] not in self.master["id_types"].codes:
            return Reply(200, responses.LOOKUP_BAD_REQUEST)
        return key

    def lookup(self, id_type: str, id_number: str, faults: Faults) -> Reply:
        """Answer a plausible lookup (always HTTP 200; the body tells the cases apart)."""
        if faults.internal_error:
            return Reply(200, responses.LOOKUP_INTERNAL_ERROR)
        scenario = self.scenarios.get(id_number)
        if scenario is not None:
            answer = self._lookup_scenario(scenario)
            if answer is not None:
                return Reply(200, answer)
        customer = self.customers.by_id(id_key(id_type, id_number))
        if customer is None:
            return Reply(200, responses.LOOKUP_NOT_FOUND)
        return Reply(200, responses.lookup_success(customer.data_json))

    def _lookup_scenario(self, scenario: Scenario) -> bytes | None:
        case = scenario.case
        if case is Case.NOT_SUBSCRIBED:
            return responses.LOOKUP_NOT_SUBSCRIBED
        if case is Case.LOOKUP_COMPLIANCE:
            return _with_message(responses.LOOKUP_COMPLIANCE, scenario)
        if case is Case.LOOKUP_BLOCKED:
            return _with_message(responses.LOOKUP_BLOCKED, scenario)
        if case is Case.LOOKUP_BAD_REQUEST:
            return responses.LOOKUP_BAD_REQUEST
        if case is Case.LOOKUP_INTERNAL_ERROR or (
            case is Case.LOOKUP_INTERNAL_ERROR_ONCE and self._once(scenario)
        ):
            return responses.LOOKUP_INTERNAL_ERROR
        return None

    # -- status ---------------------------------------------------------------------------

    def status(self, ecrn: str) -> Reply:
        """Answer the status GET (HTTP 200 in every business case)."""
        customer = self.customers.by_ecrn(ecrn)
        if customer is not None:
            return Reply(200, responses.lookup_success(customer.data_json))
        if ecrn in self._not_subscribed:
            return Reply(200, responses.LOOKUP_NOT_SUBSCRIBED)
        return Reply(200, responses.LOOKUP_NOT_FOUND)

    def id_number_of(self, ecrn: str) -> str | None:
        """The ID number of the customer with this ecrn, if known."""
        customer = self.customers.by_ecrn(ecrn)
        return customer.id_key.partition(":")[2] if customer is not None else None

    # -- onboarding -----------------------------------------------------------------------

    def parse_onboard(self, raw: bytes) -> OnboardRequest | Reply:
        """Check an onboarding body; a 40002 or 45053 answer when it fails."""
        body = _json(raw)
        if not isinstance(body, dict):
            details = {"body": "must be a JSON object"}
            return _onboard_400(40002, responses.MANDATORY_MESSAGE, details, "failure")
        problems = check_mandatory(body)
        if problems:
            return _onboard_400(40002, responses.MANDATORY_MESSAGE, problems, "failure")
        problems = check_master_data(body, self.master)
        if problems:
            return _onboard_400(45053, responses.MASTER_DATA_MESSAGE, problems, "failed")
        id_type, id_number = onboard_key(body)
        ecrn = body.get("ecrn")
        return OnboardRequest(body, id_type, id_number, str(ecrn) if ecrn else None)

    def onboard(self, request: OnboardRequest, faults: Faults) -> Reply:
        """Create or update a customer, or answer the scenario's refusal."""
        scenario = self.scenarios.get(request.id_number)
        case = scenario.case if scenario is not None else None
        if scenario is not None:
            refusal = self._onboard_refusal(scenario, request)
            if refusal is not None:
                return refusal
        if request.ecrn is not None:
            return self._update(request, case)
        if scenario is not None and (
            case is Case.CREATE_502 or (case is Case.CREATE_502_ONCE and self._once(scenario))
        ):
            return Reply(502, responses.BACKEND_502)
        status, aml = "ACTIVE", "Accepted"
        if case is Case.KYC_PENDING:
            status = "KYC PENDING"
        elif case is Case.AML_UNDER_INVESTIGATION:
            aml = "Under Investigation"
        key = id_key(request.id_type, request.id_number)
        customer = self.customers.create(key, request.body, status, aml)
        self.stats.created(customer.creates)
        if faults.after_commit or (
            scenario is not None and case is Case.CREATE_502_AFTER_COMMIT and self._once(scenario)
        ):
            return Reply(502, responses.BACKEND_502)
        return self._success(customer.ecrn, status, aml, customer.pep)

    def _onboard_refusal(self, scenario: Scenario, request: OnboardRequest) -> Reply | None:
        case = scenario.case
        if case is Case.BLOCKED:
            message = scenario.message or responses.BLOCKED_MESSAGE
            return Reply(406, responses.onboard_failure(406, 45051, message))
        if case is Case.COMPLIANCE:
            ecrn = scenario.ecrn or f"1{request.id_number[-15:]:0>15}"
            message = scenario.message or (
                f"Customer is under compliance investigation with existing ECRN {ecrn}"
            )
            return Reply(406, responses.onboard_failure(406, 45013, message))
        if case is Case.INVALID_MASTER_DATA:
            details = scenario.details or {"id_details[0].id_type": "unknown id_types code"}
            message = scenario.message or responses.MASTER_DATA_MESSAGE
            return _onboard_400(45053, message, details, "failed")
        if case is Case.MANDATORY_MISSING:
            details = scenario.details or {"first_name": "mandatory field is missing"}
            message = scenario.message or responses.MANDATORY_MESSAGE
            return _onboard_400(40002, message, details, "failure")
        return None

    def _update(self, request: OnboardRequest, case: Case | None) -> Reply:
        customer = self.customers.by_ecrn(request.ecrn or "")
        if customer is None or case is Case.UPDATE_FAILURE:
            message = f"Customer updation failed for ECRN {request.ecrn}"
            return Reply(404, responses.onboard_failure(404, 45032, message))
        self.customers.update(customer, request.body)
        self.stats.updates += 1
        return self._success(
            customer.ecrn, customer.customer_status, customer.aml_scan_status, customer.pep
        )

    def _success(self, ecrn: str, status: str, aml: str, pep: bool) -> Reply:
        body = responses.onboard_success(os.urandom(16).hex(), ecrn, status, aml, pep)
        return Reply(200, body)


def _onboard_400(code: int, message: str, details: dict[str, str], status: str) -> Reply:
    return Reply(400, responses.onboard_failure(400, code, message, details, status))


def _with_message(default: bytes, scenario: Scenario) -> bytes:
    """A scenario's own message, if it has one, in place of the default body's."""
    if scenario.message is None:
        return default
    parsed = json.loads(default)
    parsed["message"] = scenario.message
    return responses.dumps(parsed)
