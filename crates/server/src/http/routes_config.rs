//! `distributed.scheduler.http.routes`: which of Python's route modules the
//! dashboard port serves. Python imports each module named there and adds its
//! routes; this scheduler maps the modules it implements onto its own route
//! groups.
//!
//! Python's default list serves this scheduler's defaults: every group, the
//! Kubernetes operator's `/api/v1` included (Python needs
//! `distributed.http.scheduler.api` added for it). A list an operator
//! changed is honoured as given: a group is served only if its module is
//! listed. The live status page and `/sitemap.json` are always served (in
//! Python they come with the dashboard and the router themselves).

const PROMETHEUS: &str = "distributed.http.scheduler.prometheus";
const INFO: &str = "distributed.http.scheduler.info";
const JSON: &str = "distributed.http.scheduler.json";
const HEALTH: &str = "distributed.http.health";
const API: &str = "distributed.http.scheduler.api";

/// The route modules this scheduler serves, as [`RouteGroups`] has them.
const SERVED: [&str; 5] = [PROMETHEUS, INFO, JSON, HEALTH, API];

/// Python's default `distributed.scheduler.http.routes`.
pub const PYTHON_DEFAULT: [&str; 6] = [
    PROMETHEUS,
    INFO,
    JSON,
    HEALTH,
    "distributed.http.proxy",
    "distributed.http.statics",
];

/// Modules of Python's that serve nothing here: the Jupyter-server proxy
/// and the Bokeh dashboard's static files (this scheduler has neither).
const NOTHING_HERE: [&str; 2] = ["distributed.http.proxy", "distributed.http.statics"];

/// The route groups to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteGroups {
    /// `/metrics` (`distributed.http.scheduler.prometheus`)
    pub prometheus: bool,
    /// `/info/*`, `/individual-plots.json` (`distributed.http.scheduler.info`)
    pub info: bool,
    /// `/json/{counts,identity}.json`, `/json/index.html`
    /// (`distributed.http.scheduler.json`)
    pub json: bool,
    /// `/health` (`distributed.http.health`)
    pub health: bool,
    /// `/api/v1/*` (`distributed.http.scheduler.api`)
    pub api: bool,
}

impl Default for RouteGroups {
    fn default() -> RouteGroups {
        RouteGroups {
            prometheus: true,
            info: true,
            json: true,
            health: true,
            api: true,
        }
    }
}

impl RouteGroups {
    /// The groups for a configured list (`None`: not known, the defaults),
    /// and the modules named there that this scheduler cannot serve.
    pub fn from_config(routes: Option<&[String]>) -> (RouteGroups, Vec<String>) {
        let Some(routes) = routes else {
            return (RouteGroups::default(), Vec::new());
        };
        let mut listed: Vec<&str> = routes.iter().map(String::as_str).collect();
        listed.sort_unstable();
        let mut default = PYTHON_DEFAULT.to_vec();
        default.sort_unstable();
        if listed == default {
            return (RouteGroups::default(), Vec::new());
        }
        let has = |m: &str| routes.iter().any(|r| r == m);
        let groups = RouteGroups {
            prometheus: has(PROMETHEUS),
            info: has(INFO),
            json: has(JSON),
            health: has(HEALTH),
            api: has(API),
        };
        let unknown = routes
            .iter()
            .filter(|r| !SERVED.contains(&r.as_str()) && !NOTHING_HERE.contains(&r.as_str()))
            .cloned()
            .collect();
        (groups, unknown)
    }

    /// Whether `path` (a route of [`super::json::SITEMAP`]) is served.
    pub fn serves(&self, path: &str) -> bool {
        if path.starts_with("/api/v1") {
            self.api
        } else if path == "/health" {
            self.health
        } else if path == "/metrics" {
            self.prometheus
        } else if path.starts_with("/info") || path == "/individual-plots.json" {
            self.info
        } else if [
            "/json/counts.json",
            "/json/identity.json",
            "/json/index.html",
        ]
        .contains(&path)
        {
            self.json
        } else {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn python_s_default_list_serves_every_group() {
        let (groups, unknown) = RouteGroups::from_config(Some(&list(&PYTHON_DEFAULT)));
        assert_eq!(groups, RouteGroups::default());
        assert!(groups.api && unknown.is_empty());
        assert_eq!(RouteGroups::from_config(None).0, RouteGroups::default());
    }

    #[test]
    fn a_changed_list_is_honoured() {
        let cases: [(&[&str], RouteGroups, &[&str]); 3] = [
            (
                &["distributed.http.health", "distributed.http.scheduler.json"],
                RouteGroups {
                    prometheus: false,
                    info: false,
                    json: true,
                    health: true,
                    api: false,
                },
                &[],
            ),
            (
                &[
                    "distributed.http.scheduler.prometheus",
                    "distributed.http.scheduler.api",
                    "distributed.http.statics",
                    "mycompany.http.routes",
                ],
                RouteGroups {
                    prometheus: true,
                    info: false,
                    json: false,
                    health: false,
                    api: true,
                },
                &["mycompany.http.routes"],
            ),
            (
                &[],
                RouteGroups {
                    prometheus: false,
                    info: false,
                    json: false,
                    health: false,
                    api: false,
                },
                &[],
            ),
        ];
        for (routes, want, want_unknown) in cases {
            let (groups, unknown) = RouteGroups::from_config(Some(&list(routes)));
            assert_eq!(groups, want, "{routes:?}");
            assert_eq!(unknown, list(want_unknown), "{routes:?}");
        }
    }

    #[test]
    fn sitemap_paths_follow_the_groups() {
        let only_json = RouteGroups {
            prometheus: false,
            info: false,
            json: true,
            health: false,
            api: false,
        };
        let served: Vec<&str> = super::super::json::SITEMAP
            .iter()
            .copied()
            .filter(|p| only_json.serves(p))
            .collect();
        for gone in ["/metrics", "/health", "/api/v1", "/info/main/workers.html"] {
            assert!(!served.contains(&gone), "{gone}");
        }
        for kept in [
            "/json/identity.json",
            "/status",
            "/sitemap.json",
            "/json/status.json",
        ] {
            assert!(served.contains(&kept), "{kept}");
        }
    }
}
