//! The typed client's backup calls: locations, policies, backups.

use pgfleet_core::api::TaskRef;
use pgfleet_core::backup::{
    BackupListView, BackupLocation, BackupPolicy, BackupPolicyRequest, BackupRequest,
    CreateBackupLocationRequest, CreateS3Location,
};

use super::{Client, Result};

impl Client {
    pub async fn create_backup_location(
        &self,
        name: &str,
        posix_path: &str,
    ) -> Result<BackupLocation> {
        let request = CreateBackupLocationRequest {
            name: name.to_string(),
            posix_path: Some(posix_path.to_string()),
            s3: None,
        };
        self.send(self.http.post(self.url("/backup-locations")).json(&request))
            .await
    }

    /// The access key travels in the body, over the API's TLS only.
    pub async fn create_s3_backup_location(
        &self,
        name: &str,
        bucket: CreateS3Location,
    ) -> Result<BackupLocation> {
        let request = CreateBackupLocationRequest {
            name: name.to_string(),
            posix_path: None,
            s3: Some(bucket),
        };
        self.send(self.http.post(self.url("/backup-locations")).json(&request))
            .await
    }

    pub async fn backup_locations(&self) -> Result<Vec<BackupLocation>> {
        self.send(self.http.get(self.url("/backup-locations")))
            .await
    }

    pub async fn backup_location(&self, name: &str) -> Result<BackupLocation> {
        self.send(
            self.http
                .get(self.url(&format!("/backup-locations/{name}"))),
        )
        .await
    }

    pub async fn delete_backup_location(&self, name: &str) -> Result<()> {
        self.send_no_content(
            self.http
                .delete(self.url(&format!("/backup-locations/{name}"))),
        )
        .await
    }

    pub async fn set_backup_policy(
        &self,
        db: &str,
        request: &BackupPolicyRequest,
    ) -> Result<BackupPolicy> {
        let url = self.url(&format!("/databases/{db}/backup-policy"));
        self.send(self.http.put(url).json(request)).await
    }

    pub async fn backup(&self, db: &str, kind: Option<&str>) -> Result<TaskRef> {
        let request = BackupRequest {
            r#type: kind.map(str::to_string),
        };
        let url = self.url(&format!("/databases/{db}/backups"));
        self.send(self.http.post(url).json(&request)).await
    }

    pub async fn backups(&self, db: &str) -> Result<BackupListView> {
        self.send(self.http.get(self.url(&format!("/databases/{db}/backups"))))
            .await
    }
}
