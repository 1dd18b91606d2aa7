vault { address = "S3NT1NEL-c0nf1g-9f8e7d6c5b4a" 
