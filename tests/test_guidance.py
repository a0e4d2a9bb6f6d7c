"""The measured default weights of classifier-free guidance and how a request picks one."""
from moldiff.cli import build_parser
from moldiff.guidance import DEFAULT_GUIDANCE, GUIDANCE_BY_PROPERTY, default_guidance


def test_each_qm9_property_has_its_own_measured_default():
    assert set(GUIDANCE_BY_PROPERTY) == {"alpha", "gap", "homo", "lumo", "mu", "Cv"}
    for name, w in GUIDANCE_BY_PROPERTY.items():
        assert default_guidance({name: 1.0}) == w
    assert default_guidance({"alpha": 80.0}) < default_guidance({"gap": 0.25})  # the size-driven property is weaker


def test_a_request_of_several_properties_takes_the_smallest_weight():
    assert default_guidance({"gap": 0.25, "alpha": 80.0}) == min(GUIDANCE_BY_PROPERTY["gap"], GUIDANCE_BY_PROPERTY["alpha"])
    assert default_guidance({"gap": 0.25, "mu": 2.5}) == min(GUIDANCE_BY_PROPERTY["gap"], GUIDANCE_BY_PROPERTY["mu"])


def test_a_property_outside_the_table_and_an_empty_request_get_the_fallback():
    assert default_guidance({"n_oxygen": 2.0}) == DEFAULT_GUIDANCE
    assert default_guidance({}) == DEFAULT_GUIDANCE


def test_sample_help_states_every_default():
    sample = build_parser()._subparsers._group_actions[0].choices["sample"]
    (action,) = [a for a in sample._actions if a.dest == "guidance"]
    for name, w in GUIDANCE_BY_PROPERTY.items():
        assert f"{name} {w:g}" in action.help


def test_the_shipped_conditional_model_samples_with_the_request_s_default():
    from moldiff.api import load_pretrained
    from moldiff.sampling import conditioned

    gen = load_pretrained("qm9-cond")
    for request in ({"alpha": 75.0}, {"homo": -0.24}, {"gap": 0.25, "Cv": 30.0}):
        guided, extra = conditioned(gen, request, 3)
        assert guided.network.weight == default_guidance(request) and extra["cond"].shape[0] == 3
    guided, _ = conditioned(gen, {"alpha": 75.0}, 3, guidance=0.5)  # an explicit weight wins
    assert guided.network.weight == 0.5
