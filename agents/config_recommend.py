"""The `[recommend]` section of the configuration file: the recommender's budgets and the price table.

Validated here (pydantic only, nothing heavy) so that `fleetwise config check` refuses a bad price table
before an analyze run starts; analyzer.recommend reads it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PriceTable(BaseModel):
    """What a unit of each resource costs, in one currency (the default figures are illustrative on-demand
    cloud prices; set your own)."""

    model_config = ConfigDict(extra="forbid")

    currency: str = Field("USD", description="Currency the prices are in (a label only).")
    gpu_hour: dict[str, float] = Field(
        default_factory=lambda: {"default": 2.0, "v100-32gb": 1.2, "a100-40gb": 1.8, "a100-80gb": 2.2,
                                 "h100-80gb": 3.5, "mi250": 1.6},
        description="Price of one GPU-hour per accelerator key (agents.schema.accelerators.accelerator_key, e.g. "
                    "a100-80gb); `default` for types not listed.")
    core_hour: float = Field(0.03, ge=0, description="Price of one CPU core-hour.")
    memory_gib_hour: float = Field(0.004, ge=0, description="Price of one GiB-hour of memory.")
    kwh: float = Field(0.15, ge=0, description="Price of one kWh of electricity.")

    @field_validator("gpu_hour")
    @classmethod
    def _keys(cls, prices: dict[str, float]) -> dict[str, float]:
        from agents.schema.accelerators import accelerator_key

        bad = [k for k, v in prices.items() if v < 0]
        if bad:
            raise ValueError(f"negative price for {', '.join(bad)}")
        # "NVIDIA A100-SXM4-80GB" or "A100 80GB" in a config file mean the same as the canonical key
        return {k if k == "default" else accelerator_key(k): float(v) for k, v in prices.items()}

    def gpu_price(self, accelerator: str) -> float:
        from agents.schema.accelerators import accelerator_key

        return self.gpu_hour.get(accelerator_key(accelerator), self.gpu_hour.get("default", 0.0))


class RecommendSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str = Field("fleetwise", description="Sizing method: fleetwise, or the baselines krr and vpa "
                        "(analyzer.recommend.sizing).")
    half_life_hours: float | None = Field(None, gt=0, description="Half-life of the decayed usage history; unset "
                                          "uses the sizing method's own default.")
    percentile: float | None = Field(None, gt=0, le=1, description="The decayed peak sized for, as a quantile of "
                                     "the history (1.0 = the maximum; the fleetwise method blends it with the "
                                     "decayed mean); unset: the method's default.")
    margin: float | None = Field(None, ge=0, description="Margin on top of the estimate (0.15 = 15%); unset: "
                                 "the method's default.")
    min_jobs: int | None = Field(None, ge=1, description="Fewest jobs of a workload a size is recommended from; "
                                 "unset: the method's minimum.")
    max_slowdown: float = Field(0.05, ge=0, le=1, description="Slowdown budget of a power cap, a smaller GPU count "
                                "or a GPU type change (0.05 = 5%), at the upper end of its predicted interval.")
    min_saving: float = Field(0.1, ge=0, le=1, description="Smallest cut of a request worth recommending "
                              "(0.1 = 10% of what the workload asks for).")
    rebalance_objective: str = Field("throughput", description="Pool rebalancing objective: throughput "
                                     "(maximize total normalized throughput), cost (minimize money for the "
                                     "same work) or energy (minimize GPU energy for the same work, from the "
                                     "measured power per workload and type).")
    allowed_accelerators: dict[str, list[str]] = Field(
        default_factory=dict, description="Per workload, the accelerator keys it may run on (rebalancing never "
        "moves it elsewhere); unlisted workloads may run on any type whose memory and node shape fit.")
    node_idle_watts: float = Field(200.0, ge=0, description="Power of an idle node without its GPUs, for the "
                                   "energy a powered-down node saves.")
    gpu_idle_watts: float = Field(50.0, ge=0, description="Power of one idle GPU.")
    prices: PriceTable = Field(default_factory=PriceTable, description="Price table (see [recommend.prices]).")

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value not in ("fleetwise", "krr", "vpa"):
            raise ValueError(f"unknown sizing method {value!r}; known: fleetwise, krr, vpa")
        return value

    @field_validator("rebalance_objective")
    @classmethod
    def _objective(cls, value: str) -> str:
        if value not in ("throughput", "cost", "energy"):
            raise ValueError(f"unknown objective {value!r}; known: throughput, cost, energy")
        return value
