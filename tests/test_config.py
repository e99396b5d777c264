"""engine.config: the schema, its error messages, overrides and the TOML writer (serial, fast)."""

from __future__ import annotations

import io
import logging
import math
import tomllib

import pytest

from engine import config
from engine.config import ConfigError, Key, load


def write(tmp_path, text: str, name: str = "exp.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path, overrides=(), **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, overrides, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- the schema and its defaults


def test_schema_rows_are_complete_and_defaults_load():
    cfg = load(None)
    assert cfg.source is None and cfg.overrides == ()
    seen = set()
    for key in config.SCHEMA:
        assert key.dotted not in seen, f"{key.dotted} declared twice"
        seen.add(key.dotted)
        assert key.units.strip(), f"{key.dotted} has no units"
        assert key.description.strip(), f"{key.dotted} has no description"
        assert cfg.get(key.dotted) == key.default or cfg.get(key.dotted) == float(key.default)
        value = getattr(getattr(cfg, key.section), key.name)
        if key.type.startswith("list["):  # a list of the item type
            assert isinstance(value, list) and all(type(v).__name__ == key.type[5:-1] for v in value)
            continue
        assert type(value).__name__ == {"date": "str"}.get(key.type, key.type)
    assert cfg.grid.name == "f09" and cfg.grid.land_threshold == 0.5
    assert cfg.ensemble.members == 40 and cfg.time.step_seconds == 1800 and cfg.time.forcing_step_hours == 6
    assert (cfg.grid.lat_min, cfg.grid.lat_max, cfg.grid.lon_min, cfg.grid.lon_max) == (-90.0, 90.0, 0.0, 360.0)
    assert cfg.time.start == "2002-01-01" and cfg.time.stop == "2003-01-01"


def test_defaults_toml_documents_every_key_and_loads_back_to_the_defaults(tmp_path):
    text = config.defaults_toml()
    for key in config.SCHEMA:
        assert f"\n{key.name} = " in text
        assert f"# units: {key.units}; allowed: {config.allowed_text(key)}" in text
    assert 'one of "f09", "f19", "f45"' in text and "0 < land_threshold <= 1" in text
    cfg = load(write(tmp_path, text))
    assert cfg == load(None)
    assert cfg.as_dict() == load(None).as_dict()


def test_to_toml_round_trips_a_non_default_configuration(tmp_path):
    odd_dir = 'runs/quote " back \\ tab \t unicode \u00e9 \u0001 end'  # exercises the string escapes
    path = write(tmp_path, f"""
[grid]
name = "f45"
lat_min = -30          # an integer for a float key is accepted and stored as float
lat_max = 45.5
lon_min = -20.25
lon_max = 60
[ensemble]
members = 8
seed = 123456789012
[time]
start = 2002-06-01     # a TOML date
stop = 2002-07-01T06:00:00
""")
    cfg = load(path, [f"run.run_dir={odd_dir}", "restart.keep=3"])
    assert cfg.grid.lat_min == -30.0 and isinstance(cfg.grid.lat_min, float)
    assert cfg.time.start == "2002-06-01" and cfg.time.stop == "2002-07-01T06:00:00"
    assert cfg.run.run_dir == odd_dir and cfg.restart.keep == 3
    text = config.to_toml(cfg)
    assert str(path) in text and "--set restart.keep=3" in text  # provenance in the header comments
    again = load(write(tmp_path, text, "resolved.toml"))
    assert again == cfg
    assert again.as_dict() == cfg.as_dict()


def test_toml_writer_matches_tomllib_for_every_allowed_type():
    data = {
        "a": {"s": "x\"y\\z\n\u00e9\x7f", "i": -7, "big": 2**62, "f": 0.1, "tiny": 1e-300, "huge": -1.5e300,
              "t": True, "n": False, "l": [1.5, 2.0], "ls": ["a", "b c"], "li": [], "lb": [True, False]},
        "b.c": {"key with space": 1.0},
    }
    back = tomllib.loads(config.toml_dumps(data, header="two\nlines"))
    assert back == data
    specials = tomllib.loads(f"x = {config.toml_value(math.inf)}\ny = {config.toml_value(-math.inf)}\n"
                             f"z = {config.toml_value(math.nan)}")
    assert specials["x"] == math.inf and specials["y"] == -math.inf and math.isnan(specials["z"])
    import datetime

    assert config.toml_value(datetime.date(2002, 1, 1)) == '"2002-01-01"'
    with pytest.raises(TypeError, match="cannot write"):
        config.toml_value({1, 2})


def test_config_object_is_read_only_and_names_unknown_attributes():
    cfg = load(None)
    with pytest.raises(AttributeError, match="read-only"):
        cfg.grid.name = "f19"
    with pytest.raises(AttributeError, match=r"grid\.nmae.*did you mean grid\.name"):
        cfg.grid.nmae
    with pytest.raises(AttributeError, match=r"\[gird\].*did you mean grid"):
        cfg.gird
    import pickle

    assert pickle.loads(pickle.dumps(cfg)) == cfg  # comm.bcast pickles it
    assert pickle.loads(pickle.dumps(cfg)).grid.name == "f09"
    d = cfg.as_dict()
    d["grid"]["name"] = "f19"
    assert cfg.grid.name == "f09"  # as_dict is a copy
    assert list(cfg.as_dict()) == list(dict.fromkeys(k.section for k in config.SCHEMA))


def test_log_config_echoes_every_line_of_the_resolved_configuration():
    stream = io.StringIO()
    logger = logging.getLogger("laida-test-log-config")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        cfg = load(None, ["ensemble.members=12"])
        config.log_config(cfg, logger)
    finally:
        logger.removeHandler(handler)
    logged = stream.getvalue().splitlines()
    expected = config.to_toml(cfg).splitlines()
    assert len(logged) == len(expected)
    assert "config | members = 12" in logged


# --------------------------------------------------------------------------- errors: each names file and key


def test_unknown_key_names_file_and_key_and_suggests_the_close_match(tmp_path):
    path = write(tmp_path, '[grid]\nnmae = "f19"\n')
    msg = error_of(path)
    assert str(path) in msg and "grid.nmae" in msg and "did you mean grid.name?" in msg
    assert "land_threshold" in msg  # lists the keys that exist


def test_unknown_section_and_key_outside_a_section(tmp_path):
    msg = error_of(write(tmp_path, "[ensembel]\nmembers = 4\n"))
    assert "[ensembel]" in msg and "did you mean [ensemble]?" in msg and "unknown section" in msg
    msg = error_of(write(tmp_path, "members = 4\n", "top.toml"))
    assert "members = 4" in msg and "outside any [section]" in msg and "ensemble.members" in msg
    msg = error_of(write(tmp_path, "grid = 3\n", "scalar.toml"))
    assert "grid = 3" in msg and "must be a table" in msg


def test_wrong_type_names_key_given_value_and_expected_type(tmp_path):
    path = write(tmp_path, '[ensemble]\nmembers = "forty"\n')
    msg = error_of(path)
    assert str(path) in msg and 'ensemble.members = "forty"' in msg
    assert "wrong type (string)" in msg and "an integer, 1 <= members <= 10000" in msg
    assert "ensemble.members = true" in error_of(write(tmp_path, "[ensemble]\nmembers = true\n"))  # bool is no int
    assert "expected an integer" in error_of(write(tmp_path, "[ensemble]\nmembers = 40.0\n"))
    assert "expected a string" in error_of(write(tmp_path, "[grid]\nname = 9\n"))
    assert "expected a number" in error_of(write(tmp_path, '[grid]\nlat_min = "10"\n'))


def test_out_of_range_values_are_refused_and_bounds_are_inclusive_as_declared(tmp_path):
    msg = error_of(write(tmp_path, "[grid]\nland_threshold = 0\n"))
    assert "grid.land_threshold = 0" in msg and "out of range" in msg and "0 < land_threshold <= 1" in msg
    assert load(None, ["grid.land_threshold=1"]).grid.land_threshold == 1.0  # upper bound included
    assert "-90 <= lat_min <= 90" in error_of(None, ["grid.lat_min=-90.5"])
    assert "members" in error_of(None, ["ensemble.members=0"])
    assert load(None, ["ensemble.members=10000"]).ensemble.members == 10000
    assert "seed >= 0" not in error_of(None, ["ensemble.seed=-1"]) and "0 <= seed" in error_of(None, ["ensemble.seed=-1"])
    assert "keep >= 1" in error_of(None, ["restart.keep=0"])
    assert "every_cycles >= 1" in error_of(None, ["restart.every_cycles=0"])
    assert "not a finite number" in error_of(None, ["grid.lat_min=nan"])


def test_step_must_divide_the_day_and_forcing_step_the_day_in_hours():
    assert load(None, ["time.step_seconds=900"]).time.step_seconds == 900
    msg = error_of(None, ["time.step_seconds=7"])
    assert "--set time.step_seconds=7" in msg and "time.step_seconds = 7" in msg and "divisor of 86400" in msg
    assert load(None, ["time.forcing_step_hours=3"]).time.forcing_step_hours == 3
    assert "divisor of 24" in error_of(None, ["time.forcing_step_hours=5"])


def test_bad_choice_lists_the_choices_and_the_close_ones(tmp_path):
    path = write(tmp_path, '[grid]\nname = "f10"\n')
    msg = error_of(path)
    assert str(path) in msg and 'grid.name = "f10"' in msg and 'one of "f09", "f19", "f45"' in msg
    assert 'did you mean "f19"' in msg
    assert 'did you mean "INFO"' in error_of(None, ["run.log_level=info"])
    assert '"uniform"' in error_of(None, ["decomposition.weight=uniformly"])
    assert "it goes into file names" in error_of(None, ["run.name=my run"])


def test_cross_key_checks_name_both_keys(tmp_path):
    path = write(tmp_path, "[grid]\nlat_min = 10\nlat_max = -10\n")
    msg = error_of(path)
    assert str(path) in msg and "grid.lat_min = 10.0, grid.lat_max = -10.0" in msg
    assert "grid.lat_min must be less than grid.lat_max" in msg
    msg = error_of(None, ["grid.lon_min=-180"])  # with the default lon_max = 360: 540 degrees wide
    assert "--set grid.lon_min=-180, defaults" in msg and "inside the globe" in msg
    assert "grid.lon_min must be less than grid.lon_max" in error_of(None, ["grid.lon_min=20", "grid.lon_max=20"])
    cfg = load(None, ["grid.lon_min=-180", "grid.lon_max=180"])
    assert (cfg.grid.lon_min, cfg.grid.lon_max) == (-180.0, 180.0)
    msg = error_of(write(tmp_path, '[time]\nstart = 2002-06-01\nstop = "2002-06-01"\n', "t.toml"))
    assert 'time.start = "2002-06-01", time.stop = "2002-06-01"' in msg and "time.stop must be after time.start" in msg


def test_dates_accept_iso_dates_and_utc_times_only():
    assert load(None, ["time.start=2002-03-01T06:00:00"]).time.start == "2002-03-01T06:00:00"
    assert load(None, ["time.start=2002-03-01T00:00:00Z"]).time.start == "2002-03-01T00:00:00Z"
    msg = error_of(None, ["time.start=2002-13-01"])
    assert "time.start" in msg and "ISO date" in msg
    assert "time zone offset" in error_of(None, ["time.start=2002-03-01T00:00:00+02:00"])
    assert config.parse_date("2002-03-01") < config.parse_date("2002-03-01T00:30")


def test_malformed_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, '[grid]\nname = "f09"\nlat_min = = 3\n')
    msg = error_of(path)
    assert str(path) in msg and "not valid TOML" in msg and "line 3" in msg
    assert "not found" in error_of(tmp_path / "missing.toml")


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, '[grid]\nnmae = 1\nname = "x"\n[ensemble]\nmembers = 0\n')
    with pytest.raises(ConfigError) as info:
        load(path, ["time.stop=2001-01-01"])
    assert len(info.value.problems) == 4
    assert str(info.value).startswith("4 problems in the configuration:")


# --------------------------------------------------------------------------- overrides


def test_overrides_are_toml_values_or_bare_strings_and_beat_the_file(tmp_path):
    path = write(tmp_path, '[grid]\nname = "f45"\n[ensemble]\nmembers = 4\n')
    cfg = load(path, ["grid.name=f19", "ensemble.members=8", "grid.lat_min=-30", "time.start=2002-06-01",
                      "run.name=2002", "grid.lat_max = 45.5", "ensemble.members=16"])
    assert cfg.source == str(path) and len(cfg.overrides) == 7
    assert cfg.grid.name == "f19"  # bare string
    assert cfg.ensemble.members == 16  # later --set wins
    assert cfg.grid.lat_min == -30.0 and cfg.grid.lat_max == 45.5
    assert cfg.time.start == "2002-06-01"  # a TOML date, stored as its ISO string
    assert cfg.run.name == "2002"  # a string key takes the text as given
    assert load(None, ['run.run_dir="a dir"']).run.run_dir == "a dir"  # a TOML string: quotes removed


def test_bad_overrides_name_the_option():
    msg = error_of(None, ["ensemble.members=many"])
    assert '--set ensemble.members=many: ensemble.members = "many": wrong type (string)' in msg
    msg = error_of(None, ["ensemble.membrs=4"])
    assert "--set ensemble.membrs=4" in msg and "did you mean ensemble.members?" in msg
    assert "did you mean ensemble.members" in error_of(None, ["ensembel.members=4"])
    assert "expected section.key=value" in error_of(None, ["members"])
    assert "expected section.key=value" in error_of(None, ["members=4"])


def test_a_new_row_is_one_line_including_lists():
    extra = Key("obs", "kinds", "list[str]", ["LAI"], "none", "observation kinds", choices=("LAI", "FPAR"))
    schema = config.SCHEMA + (extra,)
    cfg = load(None, ['obs.kinds=["LAI", "FPAR"]'], schema=schema)
    assert cfg.obs.kinds == ["LAI", "FPAR"]
    assert load(None, schema=schema).obs.kinds == ["LAI"]
    with pytest.raises(ConfigError, match=r'obs\.kinds = \["LAI", "FAPAR"\]: item 1 = "FAPAR".*did you mean "FPAR"'):
        load(None, ['obs.kinds=["LAI", "FAPAR"]'], schema=schema)
    with pytest.raises(ConfigError, match=r'obs\.kinds = "LAI": wrong type \(string\).*a list of strings, each one of "LAI", "FPAR"'):
        load(None, ["obs.kinds=LAI"], schema=schema)
