"""The hook contract, its defaults and its validation, without a server."""

import numpy as np
import orjson
import pytest

from modelhost import InferenceRequest, InvalidInput, hookimpl
from modelhost.defaults import instances_as_array
from modelhost.errors import PluginError, PluginLoadError
from modelhost.hookcallers import HookCaller, run_sync
from modelhost.model import Model, import_model
from modelhost.settings import ServingSettings
from modelhost.plugins import PluginSpec, import_plugin, make_plugin_manager
from fixture_plugins import behaving, broken, module_plugin


def v1(instances, **parameters):
    return InferenceRequest(protocol="v1", instances=instances, parameters=parameters)


def v2(**inputs):
    return InferenceRequest(protocol="v2", inputs={k: np.asarray(v) for k, v in inputs.items()})


def predictions(model: Model, request: InferenceRequest) -> list:
    """A V1 request's predictions: for V1, the model's pipeline ends in the response body."""
    return orjson.loads(run_sync(model.infer(request)))["predictions"]


def test_only_predict_is_needed_and_defaults_do_the_rest():
    model = Model("doubler", behaving.Doubler())
    assert model.hooks == ["predict"]
    assert predictions(model, v1([[1, 2], [3, 4]])) == [[2, 4], [6, 8]]
    outputs = run_sync(model.infer(v2(a=[1.5], b=[[1, 2]])))
    assert set(outputs) == {"a", "b"}
    np.testing.assert_array_equal(outputs["b"], [[2, 4]])


def test_default_preprocess_keeps_one_row_per_v1_instance():
    assert instances_as_array([[1, 2], [3, 4]]).shape == (2, 2)
    ragged = instances_as_array([[1, 2], [3], {"a": 1}])
    assert ragged.shape == (3,) and ragged.dtype == object
    assert ragged[1] == [3] and ragged[2] == {"a": 1}
    same_length_lists_of_objects = instances_as_array([{"a": 1}, {"b": 2}])
    assert same_length_lists_of_objects.shape == (2,)


def test_a_plugins_own_hooks_answer_before_the_defaults():
    model = Model("declared", behaving.Declared())
    assert model.hooks == ["metadata", "preprocess", "predict"]
    run_sync(model.load({}))
    assert model.metadata["outputs"][0]["name"] == "sum"
    assert predictions(model, v1([[1, 2, 3]])) == [6.0]


def test_a_module_can_be_a_plugin():
    model = Model("negate", module_plugin)
    assert predictions(model, v1([1, -2])) == [-1, 2]


def test_each_model_has_its_own_plugin_manager():
    doubler = Model("doubler", behaving.Doubler())
    negate = Model("negate", module_plugin)
    assert doubler.pm is not negate.pm
    assert predictions(doubler, v1([3])) == [6]
    assert predictions(negate, v1([3])) == [-3]


def test_a_class_plugin_is_instantiated_and_load_runs_once():
    spec = PluginSpec.from_import_path("fixture_plugins.behaving:Counter")
    assert spec.name == "Counter"
    before = behaving.Counter.loads
    model = import_model(spec)
    run_sync(model.load({}))
    assert isinstance(model.plugin, behaving.Counter)
    assert behaving.Counter.loads == before + 1


def test_import_paths_name_the_model():
    assert PluginSpec.from_import_path("pkg.mod:Thing").name == "Thing"
    assert PluginSpec.from_import_path("pkg.mod").name == "mod"
    named = PluginSpec.from_import_path("my-model=pkg.mod:Thing")
    assert (named.name, named.target) == ("my-model", "pkg.mod:Thing")


@pytest.mark.parametrize(
    "plugin, message",
    [
        (broken.Misspelled(), "unknown hook 'predcit' (did you mean 'predict'?)"),
        (broken.Unmarked(), "preprocess not marked with @modelhost.hookimpl"),
        (broken.NoPredict(), "implements no predict hook"),
        (broken.WrongArguments(), "batch_size"),
    ],
)
def test_a_plugin_that_breaks_the_contract_is_refused_with_the_reason(plugin, message):
    with pytest.raises(PluginLoadError, match="model 'bad'") as caught:
        make_plugin_manager("bad", plugin)
    assert message in str(caught.value)


def test_an_import_failure_says_what_to_anyone_and_where_to_the_log():
    with pytest.raises(PluginLoadError) as caught:
        import_plugin(PluginSpec.from_import_path("fixture_plugins.import_error:Anything"))
    message = str(caught.value)
    assert "ModuleNotFoundError" in message and "a_module_that_does_not_exist" in message
    assert "import_error.py" not in message
    assert "import_error.py:" in caught.value.for_log()


def test_a_failing_load_is_a_load_error_naming_the_hook():
    with pytest.raises(PluginLoadError, match=r"load hook raised FileNotFoundError: weights.bin is missing"):
        run_sync(import_model(PluginSpec.from_import_path("fixture_plugins.broken:FailsToLoad")).load({}))


def test_invalid_input_passes_through_and_other_errors_name_the_hook():
    model = Model("picky", behaving.Picky())
    with pytest.raises(InvalidInput, match="'bad' is not an instance"):
        run_sync(model.infer(v1(["bad"])))
    with pytest.raises(PluginError, match=r"model 'picky': predict hook raised RuntimeError: the model blew up"):
        run_sync(model.infer(v1(["boom"])))


def test_a_hook_may_take_a_subset_of_its_arguments():
    class Minimal:
        @hookimpl
        def postprocess(self, outputs):
            return outputs.tolist()

        @hookimpl
        def predict(self, inputs):
            return inputs + 1

    assert predictions(Model("minimal", Minimal()), v1([1, 2])) == [2, 3]


def test_load_receives_the_plugins_settings_overridden_by_the_command_line():
    class Tuned:
        @hookimpl
        def settings(self):
            return {"max_batch_size": 4, "replicas": 2}

        @hookimpl
        def load(self, settings):
            self.loaded_with = settings

        @hookimpl
        def predict(self, inputs):
            return inputs

    model = Model("tuned", Tuned())
    run_sync(model.load({"replicas": 3}))
    assert model.plugin.loaded_with == {"replicas": 3, "max_batch_size": 4, "max_batch_wait_ms": 5.0, "max_queue_size": 256,
                                        "inline": False, "max_concurrency": 64, "health_interval_s": 5.0,
                                        "sequence_memory": 0, "memory_budget": 0, "runner": "workers", "ray_actor_options": {}, "autoscaling_config": {}}


@pytest.mark.parametrize("own, message", [
    ({"replica": 2}, "the settings hook returned unknown settings 'replica' (known: replicas, "),
    ({"replicas": -1}, "the settings hook's 'replicas' must be an integer of at least 0, got -1"),
    ({"max_batch_size": 2.5}, "the settings hook's 'max_batch_size' expected an integer, got 2.5"),
    ({"max_batch_wait_ms": "soon"}, "the settings hook's 'max_batch_wait_ms' expected a number, got 'soon'"),
    ({"inline": "yes"}, "the settings hook's 'inline' must be true or false, got 'yes'"),
])
def test_a_plugins_settings_out_of_their_range_are_refused_at_load(own, message):
    with pytest.raises(PluginLoadError) as caught:
        ServingSettings.resolve(own, {})
    assert message in str(caught.value)


def test_hooks_resolved_once_answer_as_pluggy_would():
    """Model calls firstresult hooks through callers resolved at load; they must agree with pluggy's own."""

    class Early:
        @hookimpl(tryfirst=True)
        def preprocess(self, request):
            return None if request.instances == ["late"] else ["early"]

    class Late:
        @hookimpl
        def preprocess(self, request):
            return ["late"]

        @hookimpl
        def predict(self, inputs):
            return inputs

    model = Model("ordered", Late())
    model.pm.register(Early())
    callers = {hook: HookCaller(getattr(model.pm.hook, hook)) for hook in ("preprocess", "postprocess", "load")}
    for instances in (["x"], ["late"]):  # the tryfirst hook answers; then passes (None) to the next
        request = v1(instances)
        assert run_sync(callers["preprocess"]({"request": request})) == model.pm.hook.preprocess(request=request)
    assert run_sync(callers["preprocess"]({"request": v1(["x"])})) == ["early"]
    assert run_sync(callers["preprocess"]({"request": v1(["late"])})) == ["late"]
    assert run_sync(callers["postprocess"]({"outputs": [7], "request": v1([1])})) == [7]  # the host's default
    # Not firstresult: every implementation's result counts, as pluggy's own call returns them.
    loaded = {"name": "ordered", "settings": {}, "model_dir": None}
    assert run_sync(callers["load"](loaded)) == model.pm.hook.load(**loaded)


def test_hooks_with_wrappers_keep_pluggys_caller():
    class Wrapping:
        @hookimpl(wrapper=True)
        def predict(self, inputs):
            outputs = yield
            return outputs * 10

    model = Model("doubler", behaving.Doubler())
    model.pm.register(Wrapping())
    assert run_sync(HookCaller(model.pm.hook.predict)({"inputs": np.array([1, 2]), "predictor": None})).tolist() == [20, 40]
