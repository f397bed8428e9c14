//! The work behind the replies, as the fuzzer plays it: the plans a job or a join continues
//! with; what starting a reply, a job's end, a timer, a progress message and the passing of
//! time do to the pipeline, and what the model expects of each.

use std::time::Duration;

use evloop::connection::pipeline::JobOutput;
use evloop::error::Error;
use evloop::http::Response;
use evloop::router::Reply;

use super::{Connection, JOB_BUDGET, JOIN_DEPTH};
use crate::choices::Choices;
use crate::model::{joined, streamable, Fate, Gathering, Job, JobKind, Plan, StreamModel};

impl Connection {
    /// A gather of 0–3 parts whose join answers the joined bodies or, as the fuzzer chooses,
    /// continues with more work. `depth` counts the joins above it.
    pub(super) fn gather(&self, index: usize, depth: usize, choices: &mut Choices<'_>) -> Plan {
        let parts = choices.below(4);
        let continues = choices.below(2) == 1;
        let then = if continues && depth < JOIN_DEPTH && self.queue.submitted < JOB_BUDGET {
            Some(Box::new(self.more(index, depth + 1, choices)))
        } else {
            None
        };
        Plan::Gather { parts, then }
    }

    /// More work, for a job or a join to continue with: a timer, a job, a gather or a stream.
    fn more(&self, index: usize, depth: usize, choices: &mut Choices<'_>) -> Plan {
        match choices.below(4) {
            0 => Plan::After(
                Duration::from_millis(choices.below(20) as u64),
                format!("{index} slept"),
            ),
            1 => Plan::Offload,
            2 => self.gather(index, depth, choices),
            _ => stream(choices),
        }
    }

    /// The model's fate for request `index` once the pipeline has started `plan`. `before` is
    /// the queue's (submitted, refused) counts just before.
    pub(super) fn started(&mut self, index: usize, plan: &Plan, before: (u64, u64)) -> Fate {
        let (first_new, refused_before) = before;
        let kind = match plan {
            Plan::Gather { parts: 0, then } => {
                // No part to wait for: the join runs at once.
                return match then {
                    None => Fate::Answered {
                        status: 200,
                        body: Some(joined(index, &[])),
                    },
                    Some(next) => self.started(index, next, before),
                };
            }
            Plan::Now(status, body) => {
                return Fate::Answered {
                    status: *status,
                    body: Some(body.clone()),
                }
            }
            Plan::After(_, body) => return Fate::Timer { body: body.clone() },
            Plan::Stream(status) if !streamable(*status) => {
                return Fate::Answered {
                    status: 500,
                    body: None,
                }
            }
            Plan::Offload => JobKind::Single,
            Plan::Gather { .. } => JobKind::Part,
            Plan::Stream(_) => JobKind::Stream,
        };
        for job in self.queue.live.iter_mut().filter(|j| j.id >= first_new) {
            job.kind = kind;
        }
        if self.queue.refused > refused_before {
            return Fate::Answered {
                status: 503,
                body: None,
            };
        }
        let ids: Vec<u64> = (first_new..self.queue.submitted).collect();
        match plan {
            Plan::Gather { parts, then } => Fate::Jobs {
                ids,
                gather: Some(Gathering {
                    bodies: vec![None; *parts],
                    then: then.clone(),
                }),
            },
            Plan::Stream(status) => Fate::Stream(StreamModel {
                job: ids[0],
                status: *status,
                body: None,
                pending: None,
                last: None,
                bytes: 0,
            }),
            _ => Fate::Jobs { ids, gather: None },
        }
    }

    /// `job` finishes, returning what the fuzzer chooses.
    pub(super) fn complete(&mut self, job: Job, choices: &mut Choices<'_>) {
        let index = self.request_of(job.seq);
        let failed = |choices: &mut Choices<'_>| [400, 404, 500, 503][choices.below(4)];
        // What the job returns: a response, a failure, or (for a job of its own) more work.
        enum End {
            Respond(u16, String),
            Fail(Error),
            More(Plan),
        }
        let kinds = if job.kind == JobKind::Single { 5 } else { 4 };
        let end = match choices.below(kinds) {
            0 => End::Respond(
                200,
                match job.kind {
                    JobKind::Single => format!("{index} job"),
                    JobKind::Part => format!("p{}", job.part),
                    JobKind::Stream => format!("{index} streamed"),
                },
            ),
            1 => End::Respond(failed(choices), format!("{index} failed")),
            2 => End::Fail(Error::JobPanicked),
            3 => End::Fail(Error::Unavailable),
            _ if self.queue.submitted >= JOB_BUDGET => End::Respond(200, format!("{index} job")),
            _ => End::More(self.more(index, 0, choices)),
        };
        let outcome = match &end {
            End::Respond(status, body) => {
                let response = Response::text_owned(*status, body.clone());
                Ok(match (job.kind, *status < 400) {
                    (JobKind::Single, _) => JobOutput::Reply(Reply::Now(response)),
                    (JobKind::Part, true) => JobOutput::Part(Ok(Box::new(body.clone()))),
                    (JobKind::Part, false) => JobOutput::Part(Err(response)),
                    (JobKind::Stream, _) => JobOutput::StreamEnd(response),
                })
            }
            End::Fail(err) => Err(err.clone()),
            End::More(plan) => Ok(JobOutput::Reply(plan.reply(index))),
        };
        let wanted = self.requests[index].fate.wants(job.id);
        let before = (self.queue.submitted, self.queue.refused);
        let timers = self.queue.timers.len();
        self.pipeline.complete(
            job.seq,
            job.part,
            outcome,
            Duration::ZERO,
            self.now,
            &mut self.queue,
        );
        if !wanted {
            // Nobody waits for it (its request timed out, failed, was answered or dropped, or
            // its stream ended): dropped.
            assert_eq!(self.queue.submitted, before.0, "a late result started work");
            assert_eq!(
                self.queue.timers.len(),
                timers,
                "a late result armed a timer"
            );
            return;
        }
        // The response the job ended with, for a stream or a failed gather.
        let response = match &end {
            End::Respond(status, body) => Response::text_owned(*status, body.clone()),
            End::Fail(err) => err.clone().into_response(),
            End::More(_) => Response::text(200, ""),
        };
        // The fate is taken out while the next one is worked out, and put back.
        let fate = std::mem::replace(&mut self.requests[index].fate, Fate::Sent);
        let fate = match (end, fate) {
            // A continuation: the request waits again, on whatever the job started.
            (End::More(plan), _) => self.started(index, &plan, before),
            (_, Fate::Stream(stream)) if stream.body.is_none() && response.status >= 400 => {
                // Nothing of the stream is out: the failure is an ordinary response.
                Fate::Answered {
                    status: response.status,
                    body: Some(String::from_utf8_lossy(response.body.as_bytes()).into()),
                }
            }
            (_, Fate::Stream(mut stream)) => {
                stream.finish(&response);
                Fate::Stream(stream)
            }
            (
                End::Respond(status, body),
                Fate::Jobs {
                    ids,
                    gather: Some(mut gathering),
                },
            ) if status < 400 => {
                gathering.bodies[job.part] = Some(body);
                if gathering.bodies.iter().all(Option::is_some) {
                    let bodies: Vec<String> = gathering.bodies.into_iter().flatten().collect();
                    match gathering.then {
                        None => Fate::Answered {
                            status: 200,
                            body: Some(joined(index, &bodies)),
                        },
                        // The join continues: the request waits on what it started.
                        Some(plan) => self.started(index, &plan, before),
                    }
                } else {
                    // Still waiting for the other parts.
                    Fate::Jobs {
                        ids,
                        gather: Some(gathering),
                    }
                }
            }
            (End::Respond(status, body), _) => Fate::Answered {
                status,
                body: Some(body),
            },
            (End::Fail(err), _) => Fate::Answered {
                status: err.status(),
                body: None,
            },
        };
        self.requests[index].fate = fate;
    }

    /// The timer of request `seq` fires.
    pub(super) fn fire(&mut self, seq: u64) {
        self.pipeline.on_timer(seq);
        let index = self.request_of(seq);
        let req = &mut self.requests[index];
        if let Fate::Timer { body } = &mut req.fate {
            let body = std::mem::take(body);
            req.fate = Fate::Answered {
                status: 200,
                body: Some(body),
            };
        }
    }

    /// A progress message arrives for a sequence number the fuzzer chooses: a running
    /// stream's, or any other (a request answered, finished, dropped, never dispatched), which
    /// changes nothing.
    pub(super) fn progress(&mut self, choices: &mut Choices<'_>) {
        let running: Vec<u64> = self
            .requests
            .iter()
            .filter(|req| matches!(&req.fate, Fate::Stream(stream) if stream.is_running()))
            .map(|req| req.seq)
            .collect();
        let seq = match choices.below(2) {
            0 if !running.is_empty() => running[choices.below(running.len())],
            _ => choices.below(self.pipeline.dispatched() as usize + 2) as u64,
        };
        self.messages += 1;
        let bytes = format!("{seq}.{}", self.messages).into_bytes();
        if let Some(&index) = self.by_seq.get(&seq) {
            if let Fate::Stream(stream) = &mut self.requests[index].fate {
                if stream.is_running() {
                    stream.pending = Some(bytes.clone());
                }
            }
        }
        self.pipeline.progress(seq, bytes);
    }

    /// The request deadlines that have passed answer 504: an ordinary response, or the last
    /// piece of a stream whose head is out.
    pub(super) fn expire(&mut self) {
        let mut expected = 0;
        for req in &mut self.requests {
            if !req.fate.is_waiting() || req.deadline > self.now {
                continue;
            }
            expected += 1;
            match &mut req.fate {
                Fate::Stream(stream) if stream.body.is_some() => {
                    stream.finish(&Error::GatewayTimeout.into_response());
                }
                fate => {
                    *fate = Fate::Answered {
                        status: 504,
                        body: None,
                    }
                }
            }
        }
        assert_eq!(
            self.pipeline.expire(self.now, &mut self.queue),
            expected,
            "expired requests"
        );
    }
}

/// An event stream: mostly with a 200 head; sometimes a 404 head, which streams too, or a
/// status that has no body and cannot stream.
pub(super) fn stream(choices: &mut Choices<'_>) -> Plan {
    Plan::Stream(match choices.below(8) {
        4 => 404,
        5 => 204,
        6 => 304,
        7 => 103,
        _ => 200,
    })
}
