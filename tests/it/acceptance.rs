//! The seed's own test scenarios, against the simulators.

use herald::sandbox::any_local_port;
use herald::vendors::hubspot::FakeHubSpot;
use herald::vendors::slack::FakeSlack;
use herald::vendors::tave::FakeTave;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{notification, Harness, SLACK_TOKEN};

#[tokio::test]
async fn a_multi_system_emergency_reaches_hubspot_tave_and_slack() {
    let hubspot = FakeHubSpot::start(any_local_port(), "pat-na1-acceptance", 100)
        .await
        .unwrap();
    let tave = FakeTave::start(any_local_port(), "tave-acceptance")
        .await
        .unwrap();
    tave.add_job(
        "01j00000000000000000000077",
        json!({"name": "Jordan & Casey"}),
    );
    let slack = FakeSlack::start(any_local_port(), SLACK_TOKEN, &["wedding-day"])
        .await
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("hubspot"), "pat-na1-acceptance").unwrap();
    std::fs::write(secrets.path().join("tave"), "tave-acceptance").unwrap();
    let dir = secrets.path().display();
    let body = format!(
        "[[organizations]]\nid = \"ops\"\n\
         [[integrations]]\nid = \"crm\"\norganization = \"ops\"\nkind = \"hubspot\"\nsettings = {{ base_url = \"{}\", token = {{ file = \"{dir}/hubspot\" }} }}\n\
         [[integrations]]\nid = \"booking\"\norganization = \"ops\"\nkind = \"tave\"\nsettings = {{ base_url = \"{}\", api_key = {{ file = \"{dir}/tave\" }} }}\n\
         [[integrations]]\nid = \"chat\"\norganization = \"ops\"\nkind = \"slack\"\nsettings = {{ base_url = \"{}\", channel = \"#wedding-day\", token = {{ file = \"{{secrets}}/slack\" }} }}\n",
        hubspot.base_url(),
        tave.base_url(),
        slack.base_url()
    );
    let herald = Harness::start(&body, "ops").await;
    let mut alert = notification("storm-1", "emergency");
    alert["type"] = json!("weather_alert");
    alert["title"] = json!("Storm warning for the ceremony");
    alert["contacts"] = json!([{"email": "jordan@example.com"}, {"email": "casey@example.com"}]);
    alert["metadata"] = json!({"taveJobId": "01j00000000000000000000077"});
    let routing = json!({
        "routingId": "storm-routing",
        "sourceNotification": alert,
        "targetSystems": [{"integrationId": "crm"}, {"integrationId": "booking"}, {"integrationId": "chat"}]
    });
    let (status, result) = herald.post("/v1/routings?wait=10s", &routing).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["overallStatus"], "success", "{result}");
    assert_eq!(result["systemResults"].as_array().unwrap().len(), 3);
    assert_eq!(result["successCount"], 3);
    let details = |system: &str| {
        let found = result["systemResults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["integrationId"] == system)
            .unwrap();
        found["deliveryResults"][0]["details"].clone()
    };
    assert_eq!(details("crm")["totalContacts"], 2);
    assert_eq!(
        details("crm")["successfulSyncs"],
        2,
        "the seed's successfulSyncs = N"
    );
    assert_eq!(details("crm")["failedSyncs"], 0);
    assert_eq!(
        details("booking")["syncActions"].as_array().unwrap().len(),
        1,
        "an emergency is a note only"
    );
    assert_eq!(
        hubspot.notes().len(),
        2,
        "a note on each of the two contacts"
    );
    assert_eq!(tave.notes().len(), 1);
    assert_eq!(slack.messages("wedding-day").len(), 1);
    assert!(slack.messages("wedding-day")[0].2[0]["text"]["text"]
        .as_str()
        .unwrap()
        .starts_with(":rotating_light: Storm warning"));

    // establishConnection / authenticateConnection / connectToBookingAPI, on demand.
    let check = |id: &'static str| {
        let herald = &herald;
        async move {
            herald
                .post(
                    &format!("/v1/integrations/{id}/connection-check"),
                    &json!({}),
                )
                .await
        }
    };
    let (status, slack_check) = check("chat").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(slack_check["ok"], true, "{slack_check}");
    assert_eq!(slack_check["account"]["teamId"], "T0HERALD1");
    assert!(slack_check["account"]["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("chat:write")));
    assert_eq!(
        slack_check["account"]["workspace"]["domain"], "herald-sandbox",
        "team.info: {slack_check}"
    );
    // Without team:read the token still checks out, and the answer says what it could not read.
    slack.set_scopes(&["chat:write"]);
    let (_, narrow) = check("chat").await;
    assert_eq!(narrow["ok"], true, "{narrow}");
    assert_eq!(
        narrow["account"]["workspace"]["unreadable"],
        "missing_scope"
    );
    let (_, tave_check) = check("booking").await;
    assert_eq!(
        tave_check["account"]["studio"], "Herald Sandbox Studio",
        "{tave_check}"
    );
    assert_eq!(
        tave_check["account"]["timezone"], "Europe/London",
        "read from the studio's timezoneId, as the API names it"
    );
    let (_, hubspot_check) = check("crm").await;
    assert_eq!(
        (
            hubspot_check["ok"].as_bool(),
            hubspot_check["account"]["weddingPropertiesReady"].as_bool()
        ),
        (Some(true), Some(true)),
        "{hubspot_check}"
    );
    assert_eq!(hubspot_check["account"]["hubId"], 62515);
    assert_eq!(hubspot_check["account"]["missingScopes"], json!([]));
    assert_eq!(
        hubspot_check["account"]["workflowsAllowed"], true,
        "the portal granted the optional automation scope"
    );
    // A token without the scope for properties says what it lacks.
    hubspot.set_scopes(&[
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.deals.write",
    ]);
    let (_, narrow) = check("crm").await;
    assert_eq!(
        narrow["account"]["missingScopes"],
        json!(["crm.schemas.contacts.write"]),
        "{narrow}"
    );
    assert!(
        hubspot
            .requests()
            .iter()
            .all(|r| !r.body.to_string().contains("pat-na1-acceptance")),
        "the token never appears in a recording"
    );
    hubspot.rotate_token("pat-na1-someone-else");
    let (_, refused) = check("crm").await;
    assert_eq!(
        (refused["ok"].as_bool(), refused["kind"].as_str()),
        (Some(false), Some("unauthorized")),
        "{refused}"
    );
    assert!(
        !refused.to_string().contains("pat-na1-acceptance"),
        "the token never appears in an answer"
    );
}
