"""The unload hook: called once in each process that loaded the model, whenever it stops serving it."""

import requests

from support import plugin_env, running_server


def lifecycle(tmp_path):
    path = tmp_path / "lifecycle"
    return path, {**plugin_env(), "MODELHOST_TEST_LIFECYCLE": str(path)}


def events(path) -> list[tuple[str, str]]:
    """(event, pid) for each line the plugin wrote."""
    return [(event, pid) for event, _, pid in (line.split() for line in path.read_text().splitlines())]


def post(server, path: str):
    return requests.post(server.url + path, timeout=30)


def test_a_repository_unload_calls_unload_in_the_process_that_loaded_it(tmp_path, mode):
    path, env = lifecycle(tmp_path)
    with running_server(*mode, "--plugin", "fixture_plugins.lifecycle:Unloads", env=env) as server:
        assert post(server, "/v2/repository/models/Unloads/unload").status_code == 200
        [(loaded, load_pid), (unloaded, unload_pid)] = events(path)
    assert (loaded, unloaded) == ("load", "unload") and load_pid == unload_pid


def test_an_upgrade_unloads_the_old_version_and_shutdown_the_new(tmp_path, mode):
    path, env = lifecycle(tmp_path)
    with running_server(*mode, "--plugin", "fixture_plugins.lifecycle:Unloads", env=env) as server:
        assert post(server, "/v2/repository/models/Unloads/load").status_code == 200
        assert [event for event, _ in events(path)] == ["load", "load", "unload"]  # the old one, once the new serves
        assert server.stop() == 0
    (_, old), (_, new), (_, old_unloaded), (last, new_unloaded) = events(path)
    assert (last, old_unloaded, new_unloaded) == ("unload", old, new)
    assert (old != new) == ("1" in mode)  # a worker process each, or both in the server process


def test_an_unload_that_raises_is_logged_and_the_server_serves_on(tmp_path, mode):
    path, env = lifecycle(tmp_path)
    plugins = ["--plugin", "fixture_plugins.lifecycle:UnloadRaises", "--plugin", "fixture_plugins.behaving:Doubler"]
    with running_server(*mode, *plugins, env=env) as server:
        assert post(server, "/v2/repository/models/UnloadRaises/unload").status_code == 200
        server.wait_for_log("model 'UnloadRaises': unload hook raised")
        answer = requests.post(server.url + "/v1/models/Doubler:predict", json={"instances": [2]}, timeout=30)
        assert answer.json() == {"predictions": [4]}


def test_an_unload_that_hangs_is_not_waited_for_past_its_bound(tmp_path, mode):
    path, env = lifecycle(tmp_path)
    with running_server(*mode, "--plugin", "fixture_plugins.lifecycle:UnloadHangs", env=env) as server:
        assert post(server, "/v2/repository/models/UnloadHangs/unload").status_code == 200
        bounded = "unload did not return within 5s" if "0" in mode else "did not exit within 5s of being stopped"
        server.wait_for_log(bounded)
