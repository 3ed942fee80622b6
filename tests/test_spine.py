"""Spine inputs that used to go wrong silently: reserved names, lenient keys, SQL that is not one SELECT."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from feature_store import FeatureStore, offline
from feature_store.errors import EntityDataFrameError
from feature_store.offline import get_historical_features
from online_support import make_registry

LABELS = "select user_id, label_ts, churned from stg_churn_labels"


@pytest.fixture(scope="module")
def store(built_project) -> FeatureStore:
    return FeatureStore(project_dir=built_project)


@pytest.fixture(scope="module")
def labels(built_project) -> pa.Table:
    """The churn labels (a spine whose users have features), read once."""
    con = duckdb.connect(str(built_project / "feature_store.duckdb"), read_only=True)
    try:
        return con.sql(f"{LABELS} order by label_ts, user_id").to_arrow_table()
    finally:
        con.close()


def no_compile(*_args, **_kwargs):
    raise AssertionError("the training-set query was compiled although the spine is invalid")


def test_reserved_column_names_are_refused_in_every_form(store, labels, monkeypatch):
    monkeypatch.setattr(offline, "compile_call", no_compile)
    frame = labels.slice(0, 3).to_pandas().assign(__fs_row=[2, 1, 0])
    forms = [
        frame,
        frame.rename(columns={"__fs_row": "__fs_ts"}),
        pa.Table.from_pandas(frame.rename(columns={"__fs_row": "__FS_Row"}), preserve_index=False),
        f"select *, 1 as __fs_ts from ({LABELS})",
        f"select *, 1 as __FS_ROW from ({LABELS})",
    ]
    for form in forms:
        with pytest.raises(EntityDataFrameError, match=r"(?i)column\(s\) '__fs_(row|ts)' of .*names starting "
                                                       r"with '__fs_' are reserved by feature_store; rename them"):
            get_historical_features(store.registry, form, ["user_order_features"], timestamp_column="label_ts")


def test_int_key_columns_are_converted_strictly(store, labels):
    def spine(keys: pa.Array) -> pa.Table:
        n = len(keys)
        return pa.table({"user_id": keys, "label_ts": labels.column("label_ts").slice(0, n)})

    first = labels.column("user_id")[0].as_py()
    refused = [
        (pa.array([str(first), "4_2"]), r"row 1 \(counting from 0\) holds '4_2'"),
        (pa.array([" 42"]), r"row 0 \(counting from 0\) holds ' 42'"),
        (pa.array([str(first), None, "٤٢"]), r"row 2 \(counting from 0\) holds '٤٢'"),
        (pa.array(["042"]), r"row 0 \(counting from 0\) holds '042'"),
        (pa.array([str(2**70)]), r"row 0 \(counting from 0\) holds '1180591620717411303424'"),
        (pa.array([float(first), 42.5]), r"row 1 \(counting from 0\) holds 42.5"),
        (pa.array([float("nan")]), r"row 0 \(counting from 0\) holds nan"),
    ]
    for keys, where in refused:
        with pytest.raises(EntityDataFrameError, match=r"join key column 'user_id' is declared bigint, but " + where
                           + r"; give integers, or their plain decimal text such as '42'"):
            get_historical_features(store.registry, spine(keys), ["user_order_features"], timestamp_column="label_ts")
    for keys, typ in ((pa.array([True]), "bool"), (pa.array([b"42"]), "binary")):
        with pytest.raises(EntityDataFrameError, match=f"join key column 'user_id' of the entity dataframe has type "
                                                       f"{typ}, but the feature views declare user_id as bigint"):
            get_historical_features(store.registry, spine(keys), ["user_order_features"], timestamp_column="label_ts")

    # What cannot change meaning is converted: the same training set as from an int64 column.
    ints = labels.column("user_id").slice(0, 50).combine_chunks()
    expected = get_historical_features(store.registry, spine(ints), ["user_order_features"],
                                       timestamp_column="label_ts").to_arrow()
    assert expected.column("user_7d_orders").null_count < expected.num_rows
    for keys in (ints.cast(pa.string()), ints.cast(pa.float64()), ints.cast(pa.decimal128(20, 0)),
                 ints.cast(pa.int32())):
        got = get_historical_features(store.registry, spine(keys), ["user_order_features"],
                                      timestamp_column="label_ts").to_arrow()
        assert got.drop_columns("user_id").equals(expected.drop_columns("user_id")), keys.type
    # A pandas column of ints with a gap is float64 with NaN: the gap is a NULL key, which matches nothing.
    gappy = spine(ints).to_pandas()
    gappy.loc[3, "user_id"] = None
    got = get_historical_features(store.registry, gappy, ["user_order_features"], timestamp_column="label_ts").to_df()
    assert got["user_id"].isna().tolist() == [i == 3 for i in range(50)]
    assert pd.isna(got.loc[3, "user_7d_orders"])


def test_string_keys_take_text_columns_only(monkeypatch):
    monkeypatch.setattr(offline, "compile_call", no_compile)
    registry = make_registry()
    ts = [datetime(2026, 1, 1)] * 2
    with pytest.raises(EntityDataFrameError, match="join key column 'merchant' of the entity dataframe has type int64, "
                                                   "but the feature views declare merchant as varchar"):
        get_historical_features(registry, pa.table({"user_id": [1, 2], "merchant": [42, 43], "event_timestamp": ts}),
                                ["merchant_pair"])
    with pytest.raises(EntityDataFrameError, match=r"join key column 'user_id' is declared bigint, but row 1 "
                                                   r"\(counting from 0\) holds '2.0'"):
        get_historical_features(registry, pa.table({"user_id": ["1", "2.0"], "merchant": ["a", "b"],
                                                    "event_timestamp": ts}), ["merchant_pair"])


def test_a_sql_spine_is_one_select(store, tmp_path):
    written = tmp_path / "written.csv"
    refused = [
        f"stg_churn_labels AS s; COPY (SELECT 42 AS x) TO '{written}'; SELECT 1 --",
        f"{LABELS}; COPY (SELECT 42 AS x) TO '{written}'",
        f"COPY (SELECT 42 AS x) TO '{written}'",
        f"{LABELS}; {LABELS}",
        "stg_churn_labels where true",
        "main.stg_churn_labels s",
    ]
    for text in refused:
        with pytest.raises(EntityDataFrameError, match=r"give one SELECT|neither a table/view name nor a SELECT"):
            get_historical_features(store.registry, text, ["user_order_features"], timestamp_column="label_ts")
    assert not written.exists()


def test_sql_spines_may_use_union_comments_and_quoted_names(store):
    def training_set(text: str) -> pa.Table:
        job = get_historical_features(store.registry, text, ["user_order_features"], timestamp_column="label_ts")
        return job.to_arrow().sort_by([("user_id", "ascending"), ("label_ts", "ascending")])

    expected = training_set("stg_churn_labels")
    assert expected.num_rows > 0 and expected.column("user_7d_orders").null_count < expected.num_rows
    for text in [
        'main."stg_churn_labels"',
        "select * from stg_churn_labels where user_id % 2 = 0\n"
        "union all\nselect * from stg_churn_labels where user_id % 2 <> 0 -- both halves",
        "select * from stg_churn_labels;",
        "with l as (select * from stg_churn_labels) /* all of them */ select * from l -- trailing; comment",
    ]:
        assert training_set(text).equals(expected), text
