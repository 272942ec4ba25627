//! Azure Blob Storage through Azurite, Microsoft's emulator (tests/cloud/node_modules, installed
//! by .ci/test), on a free loopback port: an all-in-one server on `az://` stores exact totals
//! and keeps them across a restart, with nothing written to the local disk but the metastore.

use kiln_testkit::emulators::Azurite;

use crate::query::push_every_profile;
use crate::support::{KilnServer, input_totals, kiln, registered_blocks, stored_total};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_store_keeps_exact_totals_across_a_restart() {
    let azurite = Azurite::start("kiln").await.unwrap();
    let kiln = azurite.store(kiln(), "data");
    let server = kiln.start().await.unwrap();
    let profiles = push_every_profile(&server).await;

    let check = |server: KilnServer| {
        let profiles = &profiles;
        async move {
            let mut checked = 0;
            for (service, profile) in profiles {
                for (profile_type, expected) in input_totals(profile) {
                    let total = stored_total(&server, &profile_type, service).await;
                    assert_eq!(total, expected, "{service} {profile_type}");
                    checked += 1;
                }
            }
            assert_eq!(checked, 72);
            server
        }
    };
    let server = check(server).await;
    // Segments went to Azure, not to the local disk: every registered block is a blob.
    assert!(!kiln.data_dir().join("objects").exists());
    let blobs = azurite.list_blobs().unwrap();
    let blocks = registered_blocks(&server).await;
    assert!(!blocks.is_empty());
    for block in &blocks {
        let name = format!("data/{}", block.path);
        assert!(blobs.contains(&name), "{name} not in {blobs:?}");
    }

    server.stop().unwrap();
    let server = kiln.start().await.unwrap();
    check(server).await.stop().unwrap();
}
