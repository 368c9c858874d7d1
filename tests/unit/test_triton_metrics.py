from aios_dagster.lib.serving.metrics import parse_counters, summarize

TEXT = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="email_router",version="1"} 10
nv_inference_request_success{model="email_router",version="2"} 5
nv_inference_request_success{model="other",version="1"} 99
nv_inference_exec_count{model="email_router",version="1"} 4
nv_inference_queue_duration_us{model="email_router",version="1"} 2000
nv_inference_compute_infer_duration_us{model="email_router",version="1"} 8000
"""


def test_counters_sum_versions_of_one_model_and_diff() -> None:
    after = parse_counters(TEXT, "email_router")
    assert after.values["nv_inference_request_success"] == 15
    before = parse_counters(TEXT.replace("} 10", "} 4"), "email_router")
    delta = after.minus(before)
    assert delta["nv_inference_request_success"] == 6
    assert summarize(after.values) == {
        "triton_requests_ok": 15.0,
        "triton_requests_failed": 0.0,
        "triton_executions": 4.0,
        "triton_queue_ms_per_exec": 0.5,
        "triton_compute_ms_per_exec": 2.0,
    }
