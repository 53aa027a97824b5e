"""Config of ``source.ibkr``: where TWS / IB Gateway listens, which contracts, and how to ride out outages."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mdp.durations import DurationNs


class ContractParams(BaseModel):
    """One IB contract, as IB's ``Contract`` names its fields (the common ones)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, description="IB symbol: 'AAPL', 'ES', 'EUR'")
    sec_type: str = Field(default="STK", description="IB security type: 'STK', 'FUT', 'CASH', 'CRYPTO', ...")
    exchange: str = Field(default="SMART", description="IB exchange or 'SMART' routing")
    currency: str = Field(default="USD", description="currency of the contract")
    primary_exchange: str = Field(default="", description="primary listing exchange, to tell SMART symbols apart")
    last_trade_date: str = Field(default="", description="futures and options: 'YYYYMM' or 'YYYYMMDD'")
    local_symbol: str = Field(default="", description="IB local symbol, e.g. 'ESZ6'")
    multiplier: str = Field(default="", description="futures and options multiplier")
    con_id: int = Field(default=0, ge=0, description="IB contract id; 0: let IB match the other fields")
    name: str | None = Field(default=None, description="symbol written in the frames; None: 'symbol'")

    @property
    def label(self) -> str:
        """The symbol the source writes for this contract."""
        return self.name or self.symbol


class IbkrParams(BaseModel):
    """Config of ``source.ibkr`` (alias ``provider.ibkr.stream``)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="host of TWS or IB Gateway")
    port: int = Field(
        default=7497, ge=1, le=65535, description="API port: 7497 paper TWS, 7496 live TWS, 4002/4001 IB Gateway"
    )
    client_id: int = Field(default=1, ge=0, description="API client id, unique among the connections to TWS")
    contracts: list[ContractParams] = Field(min_length=1, description="the contracts to stream")
    data: Literal["trades", "quotes"] = Field(
        default="trades", description="'trades': tick-by-tick AllLast; 'quotes': tick-by-tick BidAsk"
    )
    max_out_of_orderness: DurationNs = Field(default=1_000_000_000, description="watermark bound: '1s'")
    connect_timeout: DurationNs = Field(default=5_000_000_000, description="how long one connection attempt may take")
    reconnect_delay: DurationNs = Field(default=500_000_000, description="first wait before reconnecting: '0.5s'")
    reconnect_max_delay: DurationNs = Field(
        default=30_000_000_000, description="longest wait between reconnection attempts (doubling, with jitter)"
    )
    backfill: bool = Field(default=True, description="after an outage, fetch the missed ticks with reqHistoricalTicks")
    backfill_timeout: DurationNs = Field(
        default=120_000_000_000,
        description="longest a repair may take; past it the outage is sent as a Gap and bars over it are 'gap'",
    )
    ticks_per_request: int = Field(
        default=1000, ge=1, le=1000, description="ticks per reqHistoricalTicks page (IB's maximum: 1000)"
    )
    max_messages_per_second: int = Field(
        default=45, ge=1, le=50, description="requests sent to TWS per second at most (IB's limit: about 50)"
    )
    historical_per_10_min: int = Field(
        default=60, ge=1, le=60, description="historical requests in any 10 minutes at most (IB's limit: 60)"
    )
    stop_when_idle: DurationNs | None = Field(
        default=None,
        description="end the run after this long without a tick while connected (demos against the fake "
        "TWS); None: run until stopped",
    )

    @model_validator(mode="after")
    def _check(self) -> IbkrParams:
        labels = [c.label for c in self.contracts]
        if len(set(labels)) != len(labels):
            raise ValueError("contracts need distinct symbols (set 'name' to tell two listings apart)")
        if self.reconnect_max_delay < self.reconnect_delay:
            raise ValueError("reconnect_max_delay must be at least reconnect_delay")
        return self


__all__ = ["ContractParams", "IbkrParams"]
