// Umbrella header: everything public in crew.
#pragma once

#include "crew/duration.hpp"
#include "crew/errors.hpp"
#include "crew/executor.hpp"
#include "crew/future.hpp"
#include "crew/latency_server.hpp"
#include "crew/options.hpp"
#include "crew/outcome.hpp"
#include "crew/process_pool.hpp"
#include "crew/process_stats.hpp"
#include "crew/serialization.hpp"
#include "crew/sweep.hpp"
#include "crew/sweep_runner.hpp"
#include "crew/sweep_statistics.hpp"
#include "crew/thread_pool.hpp"
#include "crew/timing.hpp"
#include "crew/worker_count.hpp"
#include "crew/workloads/fetch.hpp"
#include "crew/workloads/primes.hpp"

static_assert(crew::Executor<crew::ThreadPool>);
static_assert(crew::Executor<crew::ProcessPool>);
